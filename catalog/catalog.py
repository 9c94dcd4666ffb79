"""The catalog: immutable Parquet files per table in an object store, read with pyarrow.dataset and DuckDB.

Layout below the root:
    tables/<table>/day=YYYY-MM-DD/part-<time>-<uuid>.parquet     one file per append (never rewritten)
    tables/<table>/_compactions/<time>-<uuid>.json|.done         compaction logs (see catalog.compaction)
    tables/<table>/_claims/<sha256(input)>.json                  exclusive claims of compaction inputs
    tables/<table>/_keys/<sha256(run, idempotency key)>.json     where an idempotent append put its rows
    objects/<sha256[:2]>/<sha256><suffix>                         content-addressed payloads (weights, plots)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from forgeflow.catalog.compaction import log_state, snapshot
from forgeflow.catalog.errors import CatalogError
from forgeflow.catalog.schema import TableSpec
from forgeflow.catalog.store import Store, new_file_name, open_store, safe_key
from forgeflow.catalog.tables import all_tables, get_table

DEFAULT_URL = "./.forgeflow/catalog"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _conform(spec: TableSpec, rows: pa.Table | Sequence[Mapping[str, Any]], run_id: str, day: str) -> pa.Table:
    """Rows as a table with exactly the spec's file columns (missing nullable columns become nulls)."""
    schema = spec.full_schema
    if isinstance(rows, pa.Table):
        data = {name: rows.column(name) for name in rows.column_names}
        n = rows.num_rows
    else:
        rows = list(rows)
        n = len(rows)
        names = {k for r in rows for k in r}
        data = {name: [r.get(name) for r in rows] for name in names}
    unknown = set(data) - set(schema.names)
    if unknown:
        raise CatalogError(f"table {spec.name!r} has no column(s) {sorted(unknown)}; columns: {schema.names}")
    data["run_id"] = [run_id] * n
    if "day" in schema.names:
        data["day"] = [day] * n
    arrays = []
    for f in schema:
        if f.name in data:
            col = data[f.name]
            try:
                arr = pa.array(col, type=f.type) if not isinstance(col, (pa.Array, pa.ChunkedArray)) else col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise CatalogError(f"table {spec.name!r}, column {f.name!r}: cannot store values as {f.type}: {exc}") from None
        else:
            arr = pa.nulls(n, type=f.type)
        if not f.nullable and arr.null_count:
            raise CatalogError(f"table {spec.name!r}, column {f.name!r} must not be null")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


class Catalog:
    """Parquet tables and content-addressed objects in a :class:`~catalog.store.Store`."""

    def __init__(self, store: Store, *, query_timeout_s: float | None = None, query_memory: str | None = None,
                 compaction_grace_s: float | None = None):
        self.store = store
        self.query_timeout_s = query_timeout_s  # None: catalog.sql's defaults (300 s, a quarter of RAM up to 4 GiB)
        self.query_memory = query_memory
        self.compaction_grace_s = compaction_grace_s  # None: catalog.compaction.DEFAULT_GRACE_S (1 h)

    @property
    def url(self) -> str:
        return self.store.describe()

    # -------------------------------------------------------------- tables
    @staticmethod
    def tables() -> dict[str, TableSpec]:
        return all_tables()

    def append(self, table: str, rows: pa.Table | Sequence[Mapping[str, Any]], *, run_id: str,
               description: str = "", idempotency_key: str | None = None) -> str | None:
        """Write ``rows`` as one new immutable file of ``table``; record its lineage; return its key.

        Nothing is written for zero rows. The write is atomic: concurrent readers see the whole file or none.
        With ``idempotency_key`` (e.g. run id + step + item) the file name is derived from it, so a retried step
        (a worker killed after some of its writes) replaces its earlier files instead of adding duplicate rows.
        """
        spec = get_table(table)
        if not run_id:
            raise CatalogError("append needs a run_id (lineage)")
        now = _now()
        data = _conform(spec, rows, run_id, now.date().isoformat())
        if data.num_rows == 0:
            return None
        part_dirs = []
        for p in spec.partition_by:
            vals = data.column(p).unique().to_pylist()
            if len(vals) != 1:
                raise CatalogError(f"one append must hold one value of partition column {p!r}")
            part_dirs.append(f"{p}={vals[0]}")
        file_table = data.select(spec.file_schema.names).replace_schema_metadata(spec.full_schema.metadata)
        payload = parquet_bytes(file_table)
        num_rows, num_bytes = data.num_rows, len(payload)
        if idempotency_key:
            key, already = self._idempotent_key(spec, run_id, idempotency_key, part_dirs)
            if already is None:
                self.store.put(key, payload)
            else:
                num_rows, num_bytes = already
        else:
            key = safe_key("tables", spec.name, *part_dirs, new_file_name())
            self.store.put(key, payload)
        if spec.name != "artifacts":
            lineage_key = f"lineage:{spec.name}:{idempotency_key}" if idempotency_key else None
            self.append("artifacts", [{
                "kind": "table", "table_name": spec.name, "path": key, "num_rows": num_rows,
                "num_bytes": num_bytes, "written_at": now, "description": description,
            }], run_id=run_id, idempotency_key=lineage_key)
        return key

    def _idempotent_key(self, spec: TableSpec, run_id: str, idempotency_key: str,
                        part_dirs: list[str]) -> tuple[str, tuple[int, int] | None]:
        """(file key, (rows, bytes) if an earlier attempt already committed it) for an idempotent append.

        The first attempt records where it writes (``_keys/<digest>.json``, an exclusive create) and every retry
        writes there too -- whatever the day is now -- or writes nothing when that file is already there or was
        compacted: the first complete write wins, so no retry adds a second copy or is hidden by a compaction.
        """
        digest = hashlib.sha256(f"{run_id}\0{idempotency_key}".encode()).hexdigest()[:32]
        key = safe_key("tables", spec.name, *part_dirs, f"part-k{digest}.parquet")
        marker = f"tables/{spec.name}/_keys/{digest}.json"
        if self.store.create(marker, json.dumps({"key": key}).encode()):
            return key, None
        first = safe_key(json.loads(self.store.get(marker))["key"])
        if [p for p in first.split("/")[2:-1] if not p.startswith("day=")] != \
                [p for p in part_dirs if not p.startswith("day=")]:
            raise CatalogError(f"idempotency key {idempotency_key!r} of run {run_id!r} was first used for another "
                               f"partition of table {spec.name!r} ({first})")
        try:
            data = self.store.get(first)
            return first, (pq.ParquetFile(io.BytesIO(data)).metadata.num_rows, len(data))
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - an unreadable earlier attempt: replace it
            return first, None
        state = log_state(self.store, spec.name)
        for k in state.committed:
            lg = state.logs[k]
            if first in state.inputs(k):
                rows = lg.get("inputs", {}).get(first) if isinstance(lg.get("inputs"), dict) else None
                return first, (rows if rows is not None else 0, 0)
        return first, None

    def visible_files(self, table: str) -> list[str]:
        """The data files a reader should see now (compaction-aware and consistent; see catalog.compaction)."""
        spec = get_table(table)
        return snapshot(self.store, spec.name)[0]

    def dataset(self, table: str, files: list[str] | None = None) -> ds.Dataset:
        spec = get_table(table)
        fs, root = self.store.arrow_filesystem()
        keys = self.visible_files(table) if files is None else files
        part = ds.partitioning(spec.partition_schema, flavor="hive") if spec.partition_by else None
        return ds.dataset([f"{root}/{k}" for k in keys], schema=spec.full_schema, format="parquet", filesystem=fs,
                          partitioning=part, partition_base_dir=f"{root}/tables/{spec.name}")

    def retrying(self, table: str, fn):
        """``fn()`` retried while a compaction deletes files between a listing and the read; a damaged file
        becomes one CatalogError naming the table (``catalog verify`` names the file)."""
        for attempt in range(8):
            try:
                return fn()
            except CatalogError:
                raise
            except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
                msg = str(exc)
                gone = isinstance(exc, FileNotFoundError) or "not found" in msg.lower() or \
                    "no such file" in msg.lower() or "nosuchkey" in msg.lower()
                if gone and attempt < 7:
                    time.sleep(0.02 * (attempt + 1))
                    continue
                first = msg.splitlines()[0] if msg else type(exc).__name__
                raise CatalogError(f"cannot read table {table!r} in catalog {self.url}: {first} "
                                   f"(run `forgeflow catalog verify`)") from None
        raise AssertionError("unreachable")

    def read(self, table: str, filter: ds.Expression | None = None, columns: list[str] | None = None) -> pa.Table:
        """Rows of ``table`` matching ``filter`` (a pyarrow.compute expression), as one Arrow table."""
        spec = get_table(table)
        if columns:
            missing = set(columns) - set(spec.full_schema.names)
            if missing:
                raise CatalogError(f"table {table!r} has no column(s) {sorted(missing)}")
        return self.retrying(table, lambda: self.dataset(table).to_table(filter=filter, columns=columns))

    def count_rows(self, table: str) -> int:
        return self.retrying(table, lambda: self.dataset(table).count_rows())

    def query(self, sql: str) -> pa.Table:
        """Read-only DuckDB SQL over every table (each one a view by its name), within this catalog's query timeout
        and memory limit."""
        from forgeflow.catalog.sql import run_readonly_query

        return run_readonly_query(self, sql, timeout_s=self.query_timeout_s, memory_limit=self.query_memory)

    def compact(self, table: str | None = None, *, min_files: int = 2) -> dict[str, int]:
        """Merge each partition's small files into one; safe while writers append. Returns files removed per table."""
        from forgeflow.catalog.compaction import DEFAULT_GRACE_S, check_grace_s, compact_table

        names = [table] if table else sorted(self.tables())
        specs = [get_table(name) for name in names]
        # compactions pending longer than this are settled (finished or voided) first
        grace = DEFAULT_GRACE_S if self.compaction_grace_s is None else check_grace_s(self.compaction_grace_s)
        self._check_footers(names)  # a damaged file stops the whole compaction before it writes anything
        return {spec.name: compact_table(self, spec, min_files=min_files, settle_after_s=grace) for spec in specs}

    def _check_footers(self, names: list[str]) -> None:
        fs, root = self.store.arrow_filesystem()
        for name in names:
            for key in self.visible_files(name):
                try:
                    pq.read_metadata(f"{root}/{key}", filesystem=fs)
                except FileNotFoundError:
                    continue  # compacted meanwhile
                except Exception as exc:  # noqa: BLE001 - 0-byte, truncated, not Parquet
                    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    # gone or no longer visible: a concurrent compaction consumed it while it was read (S3 reports
                    # that in several ways; "magic bytes not found" is a damaged file, so no matching on messages)
                    if not self.store.exists(key) or key not in self.visible_files(name):
                        continue
                    raise CatalogError(f"cannot compact table {name!r}: {key} is not a readable Parquet file "
                                       f"({msg}); nothing was compacted (run `forgeflow catalog verify`)") from None

    # -------------------------------------------------------------- runs
    def runs(self) -> pa.Table:
        """The latest state of every run (one row per run_id), newest first."""
        return self.query(
            "SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY "
            "CASE status WHEN 'running' THEN 0 ELSE 1 END DESC, coalesce(ended_at, started_at) DESC) AS rn FROM runs) "
            "WHERE rn = 1 ORDER BY started_at DESC"
        )

    def run(self, run_id: str) -> dict[str, Any] | None:
        import pyarrow.compute as pc

        rows = self.read("runs", filter=pc.field("run_id") == run_id).to_pylist()
        if not rows:
            return None
        rows.sort(key=lambda r: (r["status"] != "running", r["ended_at"] or r["started_at"]))
        return rows[-1]

    # -------------------------------------------------------------- objects
    def put_object(self, data: bytes, suffix: str = ".bin", *, run_id: str | None = None,
                   description: str = "", kind: str = "object") -> str:
        """Store ``data`` under its SHA-256 (idempotent); return the key. Records lineage when ``run_id`` is given."""
        digest = hashlib.sha256(data).hexdigest()
        if suffix and not suffix.startswith("."):
            suffix = "." + suffix
        key = safe_key("objects", digest[:2], digest + suffix)
        self.store.put(key, data, exclusive=True)
        if run_id:
            self.append("artifacts", [{"kind": kind, "path": key, "num_bytes": len(data), "written_at": _now(),
                                       "description": description}], run_id=run_id)
        return key

    def get_object(self, key: str) -> bytes:
        """The bytes of a stored object, checked against the SHA-256 in its name (CatalogError naming the key)."""
        key = safe_key(key)
        name = key.rsplit("/", 1)[-1]
        digest = name.split(".", 1)[0]
        if not key.startswith("objects/") or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise CatalogError(f"{key!r} is not an object key (objects/<sha256[:2]>/<sha256><suffix>)")
        try:
            data = self.store.get(key)
        except FileNotFoundError:
            raise CatalogError(f"object {key!r} not found in catalog {self.url}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CatalogError(f"object {key!r} in catalog {self.url} is corrupt: its content does not match the "
                               f"SHA-256 in its name (refusing to use it; run `forgeflow catalog verify`)")
        return data

    def put_arrays(self, arrays: Mapping[str, Any], *, run_id: str | None = None, description: str = "") -> str:
        """Named numpy arrays (e.g. model weights) as a safetensors object; returns its key."""
        from safetensors.numpy import save

        import numpy as np

        blob = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
        return self.put_object(blob, ".safetensors", run_id=run_id, description=description, kind="weights")

    def get_arrays(self, key: str) -> dict[str, Any]:
        from safetensors.numpy import load

        data = self.get_object(key)
        try:
            return load(data)
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign object: one clear error
            raise CatalogError(f"object {key!r} is not a readable safetensors file: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def open_catalog(url: str | None = None, *, endpoint_url: str | None = None, query_timeout_s: float | None = None,
                 query_memory: str | None = None, compaction_grace_s: float | None = None) -> Catalog:
    """Open (creating a local folder if needed) the catalog at ``url`` (default ./.forgeflow/catalog); its SQL
    queries run within ``query_timeout_s`` seconds and ``query_memory``, its compactions settle ones left pending
    longer than ``compaction_grace_s`` (None: the defaults of catalog.sql and catalog.compaction)."""
    return Catalog(open_store(url or DEFAULT_URL, endpoint_url=endpoint_url), query_timeout_s=query_timeout_s,
                   query_memory=query_memory, compaction_grace_s=compaction_grace_s)
