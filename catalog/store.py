"""Object stores behind the catalog: a local folder or S3 (through s3fs).

Contract (every backend; tests/catalog runs one conformance suite against each):
- paths are '/'-separated keys relative to the catalog root; ``..``, absolute paths and backslashes are refused;
- ``put`` is atomic and durable: a reader sees either no object or the whole object (temporary file, fsync, rename
  and a directory fsync on disk; one PUT on S3), and ``put(..., exclusive=True)`` never replaces an existing object;
- ``create`` is an exclusive create that tells who won: ``True`` for exactly one of many concurrent callers (a hard
  link, i.e. an ``O_EXCL`` create, on disk; a conditional PUT ``If-None-Match: *`` on S3);
- keys never leave the root: on disk the resolved path (symlinks followed) must lie inside the resolved root;
- ``list`` returns the keys below a prefix, sorted; ``get`` raises FileNotFoundError for a missing key;
- ``delete`` of a missing key is not an error.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

from forgeflow.catalog.errors import CatalogError

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.=\-]+$")


def safe_key(*parts: str) -> str:
    """Join key parts, refusing anything that could escape the catalog root."""
    out = []
    for part in parts:
        for seg in str(part).split("/"):
            if seg in ("", "."):
                continue
            if seg == ".." or not _SAFE_PART.match(seg):
                raise CatalogError(f"unsafe catalog path component {seg!r}")
            out.append(seg)
    if not out:
        raise CatalogError("empty catalog path")
    return "/".join(out)


class Store(ABC):
    """A flat key -> bytes store with atomic puts."""

    url: str

    @abstractmethod
    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None: ...

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if no object is there; True if this call created it."""

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def arrow_filesystem(self):
        """(pyarrow FileSystem, root path in it) for pyarrow.dataset reads."""

    def describe(self) -> str:
        """The URL with any secret removed (safe for logs)."""
        return self.url


def _fsync_dir(path: Path) -> None:
    """fsync a folder so a rename or link in it is durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalStore(Store):
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "_tmp").mkdir(exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create catalog folder {self.root}: {exc.strerror}") from None

    def _path(self, key: str) -> Path:
        """The file of ``key``; refuses a path that a symlink inside the catalog sends outside the root."""
        path = self.root / safe_key(key)
        real = os.path.realpath(path)
        root = str(self.root)
        if real != root and not real.startswith(root + os.sep):
            raise CatalogError(f"catalog key {key!r} resolves outside the catalog root {root} (through a symlink); "
                               f"refused")
        return path

    def _write_tmp(self, data: bytes) -> str:
        fd, tmp = tempfile.mkstemp(dir=self.root / "_tmp", prefix=".put-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _mkdirs(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._path(dest.relative_to(self.root).as_posix())  # a symlinked folder made on the way is refused

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        if exclusive:
            self.create(key, data)
            return
        dest = self._path(key)
        self._mkdirs(dest)
        tmp = self._write_tmp(data)
        try:
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)  # the rename itself survives a power loss
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def create(self, key: str, data: bytes) -> bool:
        dest = self._path(key)
        self._mkdirs(dest)
        tmp = self._write_tmp(data)
        try:
            try:
                os.link(tmp, dest)  # atomic exclusive create (like O_EXCL) of the whole, fsynced file
            except FileExistsError:
                return False
            _fsync_dir(dest.parent)
            return True
        finally:
            os.unlink(tmp)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.exists():
            return []
        out = []
        for dirpath, _, files in os.walk(base):  # does not descend into symlinked folders
            for name in files:
                full = Path(dirpath) / name
                if full.is_symlink():
                    continue  # never a catalog file: the catalog writes none
                out.append(full.relative_to(self.root).as_posix())
        return sorted(out)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def arrow_filesystem(self):
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), self.root.as_posix()


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str
    endpoint_url: str | None


def parse_s3_url(url: str, endpoint_url: str | None = None) -> S3Location:
    u = urlparse(url)
    if not u.netloc:
        raise CatalogError(f"S3 URL {url!r} has no bucket (expected s3://bucket/prefix)")
    if u.username or u.password:
        raise CatalogError("credentials must not be put in the catalog URL; use the AWS environment or config")
    q = parse_qs(u.query)
    in_url = (q.get("endpoint_url") or q.get("endpoint") or [None])[0]
    endpoint = endpoint_url or in_url
    if endpoint:
        e = urlparse(endpoint)
        if e.username or e.password or "@" in e.netloc:
            raise CatalogError("credentials must not be put in the S3 endpoint URL; use the AWS environment or "
                               "config")
        if e.scheme not in ("http", "https") or not e.hostname:
            raise CatalogError("the S3 endpoint must be an http:// or https:// URL with a host, e.g. "
                               "http://127.0.0.1:9000")
        if e.query or e.fragment:
            raise CatalogError("the S3 endpoint URL must not carry a query or fragment")
        endpoint = endpoint.rstrip("/")
    return S3Location(u.netloc, u.path.strip("/"), endpoint)


class S3Store(Store):
    """S3 or an S3-compatible store; credentials come from the standard AWS environment/config only."""

    def __init__(self, url: str, endpoint_url: str | None = None, *, connect_timeout: float = 5.0):
        import s3fs

        loc = parse_s3_url(url, endpoint_url)
        self.loc = loc
        # the endpoint travels with the URL, so every process that reopens the catalog from it (flows, Dask
        # workers, deployments) talks to the same store, never to a same-named bucket on AWS
        base_url = f"s3://{loc.bucket}/{loc.prefix}".rstrip("/")
        self.url = base_url + (f"?endpoint_url={quote(loc.endpoint_url, safe=':/')}" if loc.endpoint_url else "")
        self._base = posixpath.join(loc.bucket, loc.prefix) if loc.prefix else loc.bucket
        config = {
            "connect_timeout": connect_timeout,
            "read_timeout": 60,
            "retries": {"max_attempts": 3, "mode": "standard"},
            # newer botocore adds checksums S3-compatible stores (moto, MinIO) may reject
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
        client_kwargs = {"endpoint_url": loc.endpoint_url} if loc.endpoint_url else {}
        self.fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, config_kwargs=config, skip_instance_cache=True,
                                    use_listings_cache=False)
        self._arrow_fs = None
        self._check_reachable()

    def _check_reachable(self) -> None:
        where = self.url.split("?", 1)[0] + (f" at {self.loc.endpoint_url}" if self.loc.endpoint_url else "")
        from fsspec.asyn import sync

        try:
            sync(self.fs.loop, self.fs._call_s3, "head_bucket", Bucket=self.loc.bucket)
        except FileNotFoundError:
            raise CatalogError(f"S3 bucket {self.loc.bucket!r} does not exist ({where})") from None
        except PermissionError:
            raise CatalogError(f"access denied to S3 catalog {where}: check AWS credentials") from None
        except Exception as exc:  # connection refused, DNS, timeouts: one clear message
            raise CatalogError(f"cannot reach S3 catalog {where}: {type(exc).__name__}: {exc}") from None

    def _full(self, key: str) -> str:
        return f"{self._base}/{safe_key(key)}"

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        if exclusive:
            self.create(key, data)
            return
        self.fs.pipe_file(self._full(key), data)  # a single PUT: atomic on S3

    def create(self, key: str, data: bytes) -> bool:
        import time

        for attempt in range(6):
            try:  # a conditional PUT (If-None-Match: *): S3 itself decides the one winner
                self.fs.pipe_file(self._full(key), data, mode="create")
                return True
            except FileExistsError:
                return False
            except OSError as exc:  # 409 ConditionalRequestConflict: a concurrent conditional PUT, try again
                if "conflict" not in str(exc).lower() or attempt == 5:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return False

    def get(self, key: str) -> bytes:
        return self.fs.cat_file(self._full(key))

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._full(key))

    def list(self, prefix: str) -> list[str]:
        full = self._full(prefix)
        try:
            found = self.fs.find(full)
        except FileNotFoundError:
            return []
        n = len(self._base) + 1
        return sorted(p[n:] for p in found)

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._full(key))
        except FileNotFoundError:
            pass

    def arrow_filesystem(self):
        """Arrow's native S3 client (parallel C++ reads, same AWS credential chain); s3fs as a fallback."""
        import pyarrow.fs as pafs

        if self._arrow_fs is None:
            try:
                kw = {}
                if self.loc.endpoint_url:
                    u = urlparse(self.loc.endpoint_url)
                    kw = {"endpoint_override": u.netloc, "scheme": u.scheme or "https"}
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                self._arrow_fs = pafs.S3FileSystem(region=region, connect_timeout=5, request_timeout=60, **kw)
            except (ImportError, AttributeError, OSError):
                self._arrow_fs = pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        return self._arrow_fs, self._base


def open_store(url: str, *, endpoint_url: str | None = None) -> Store:
    """A store from a URL: a plain path, ``file://PATH`` or ``s3://bucket/prefix``."""
    if not url:
        raise CatalogError("empty catalog URL")
    scheme = urlparse(url).scheme
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = urlparse(url).path if scheme == "file" else url
        return LocalStore(path)
    if scheme in ("s3", "s3a"):
        return S3Store(url, endpoint_url)
    raise CatalogError(f"unsupported catalog URL scheme {scheme!r} in {url!r} (use a path, file:// or s3://)")


def new_file_name(prefix: str = "part") -> str:
    """A unique, time-ordered file name (many writers at once never collide)."""
    import time

    return f"{prefix}-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
