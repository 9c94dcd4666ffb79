"""Every step's result cached across runs, keyed on its inputs and the code version, found through the catalog.

A step is a plain function whose arguments include ``catalog_url`` and ``run_id`` (and optionally ``endpoint_url``);
``@cached_step("name")`` wraps it (under the domain's ``@task``) so that:

- its **key** is the sha256 of the step name, its canonical inputs (``catalog_url``, ``run_id``, ``endpoint_url`` and
  any ``ignore`` names left out; frozen dataclasses by field; arguments named in ``files`` by content) and the
  **code version** (``code_version``: a hash of the source of the step's ``tasks`` package and of every ``tasks``
  package it imports, transitively, of the catalog's table schemas, and of the versions of the numeric libraries);
- when the catalog's ``step_cache`` table holds a ``completed`` row for that key, the step does not run: its stored
  result (which names the rows and objects the first run wrote) is returned and a ``reused`` row records, under the
  new run's id, which run it came from;
- otherwise the step runs and, when it returns, a ``completed`` row stores its JSON result. A step that raises
  stores nothing, so a failed or interrupted run leaves nothing to reuse.

The catalog is the source of truth (a Dask worker's local Prefect result store is not visible to the flow), so this
replaces Prefect's own cache policies: steps use ``cache_policy=NO_CACHE``. ``FORGEFLOW_STEP_CACHE=0`` turns reuse
off (every step runs and records a fresh ``completed`` row, which later runs may reuse). The switch is the command's,
not the worker's: a cached step takes a keyword-only ``step_cache`` argument (left out of its key) that the flow sets
from its settings when it submits the step, so it travels with the task to whichever Dask worker runs it (a warm
`forgeflow up` cluster started with other settings); ``step_cache=None`` (a direct call) reads this process's
``FORGEFLOW_STEP_CACHE``. No Prefect import.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import inspect
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable

TABLE = "step_cache"
ALWAYS_IGNORED = ("catalog_url", "run_id", "endpoint_url")
LIBRARIES = ("forgeflow", "torch", "numpy", "highspy", "scikit-learn", "lightgbm", "pyarrow")
_ROOT = Path(__file__).resolve().parents[1]  # the directory holding tasks/ and catalog/
_IMPORT = re.compile(r"^\s*(?:from|import)\s+forgeflow\.tasks\.(\w+)", re.M)


class Uncacheable(TypeError):
    """An input that has no stable canonical form (the step then runs uncached)."""


def enabled() -> bool:
    return os.environ.get("FORGEFLOW_STEP_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def step_retries() -> int:
    """``FORGEFLOW_STEP_RETRIES`` (default 1): how often a failed step is retried. The CLI validates it before any
    run starts (``flows.settings``); here a bad value falls back to the default."""
    try:
        return max(0, int(os.environ.get("FORGEFLOW_STEP_RETRIES", "1")))
    except ValueError:
        return 1


def step_options() -> dict[str, Any]:
    """The Prefect task options every step shares: retries from ``FORGEFLOW_STEP_RETRIES``, no Prefect result
    persistence (results are found through the catalog)."""
    return {"retries": step_retries(), "retry_delay_seconds": 2, "persist_result": False}


# ------------------------------------------------------------------------------------------------- code version

def _module_files(name: str) -> list[Path]:
    """Source files of ``tasks.<name>`` (a package: every .py under it; a module: its file)."""
    pkg = _ROOT / "tasks" / name
    if pkg.is_dir():
        return sorted(pkg.rglob("*.py"))
    mod = _ROOT / "tasks" / f"{name}.py"
    return [mod] if mod.is_file() else []


@functools.lru_cache(maxsize=None)
def code_version(module: str) -> str:
    """Hash of the source a step defined in ``module`` (``forgeflow.tasks.<domain>.steps``) runs: its domain package, every
    ``tasks`` package or module it imports (transitively), the catalog's table schemas, and library versions."""
    parts = module.split(".")
    todo = [parts[2]] if len(parts) > 2 and parts[:2] == ["forgeflow", "tasks"] else []
    seen: set[str] = set()
    files: list[Path] = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for f in _module_files(name):
            files.append(f)
            todo.extend(_IMPORT.findall(f.read_text(encoding="utf-8", errors="replace")))
    files += sorted((_ROOT / "catalog" / "tables").glob("*.py"))
    h = hashlib.sha256()
    for f in sorted(set(files)):
        h.update(str(f.relative_to(_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    from importlib.metadata import PackageNotFoundError, version

    for lib in LIBRARIES:
        try:
            h.update(f"{lib}={version(lib)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{lib}=none\0".encode())
    return h.hexdigest()[:24]


# ------------------------------------------------------------------------------------------------ canonical inputs

def canonical(value: Any) -> Any:
    """A JSON-able form of ``value`` equal for equal inputs (dict order, tuple vs list, dataclass by field)."""
    if isinstance(value, str):
        if 0 < len(value) < 1024 and "\n" not in value and "://" not in value and os.path.exists(value):
            return {"path": value, "content": file_digest(value)}  # a user's file or folder: keyed by content
        return value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": type(value).__qualname__,
                **{f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=repr)
    if isinstance(value, Path):
        return canonical(str(value))
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return canonical(value.tolist())
    raise Uncacheable(f"no canonical form for {type(value).__name__}")


def file_digest(path: str | os.PathLike | None) -> Any:
    """Content hash of a file, or of every file under a folder (names and contents); None stays None."""
    if path is None:
        return None
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    elif p.is_file():
        h.update(p.read_bytes())
    else:
        return {"name": p.name, "missing": True}
    return {"name": p.name, "sha256": h.hexdigest()}


def cache_key(step: str, inputs: dict[str, Any], code: str) -> str:
    blob = json.dumps({"step": step, "inputs": inputs, "code": code}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ catalog side

def lookup(cat, key: str) -> dict[str, Any] | None:
    """The latest ``completed`` row for ``key`` (source_run_id, result JSON), or None."""
    import pyarrow.compute as pc

    t = cat.read(TABLE, filter=(pc.field("cache_key") == key) & (pc.field("status") == "completed"),
                 columns=["source_run_id", "result", "created_at"])
    if t.num_rows == 0:
        return None
    return max(t.to_pylist(), key=lambda r: r["created_at"])


def reuses(cat, run_id: str) -> list[dict[str, Any]]:
    """This run's step_cache rows (step, status, source_run_id), oldest first: which steps ran and which were reused."""
    import pyarrow.compute as pc

    t = cat.read(TABLE, filter=pc.field("run_id") == run_id, columns=["step", "status", "source_run_id",
                                                                      "created_at"])
    return sorted(t.to_pylist(), key=lambda r: r["created_at"])


def _json_default(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"{type(v).__name__} is not JSON-able")


def _row(key: str, step: str, code: str, status: str, source_run: str, inputs: Any, result: str,
         seconds: float) -> dict[str, Any]:
    return {"cache_key": key, "step": step, "code_version": code, "status": status, "source_run_id": source_run,
            "inputs": json.dumps(inputs, sort_keys=True, default=str)[:20000], "result": result,
            "seconds": seconds, "created_at": dt.datetime.now(dt.timezone.utc)}


def cached_step(name: str, *, files: Iterable[str] = (), ignore: Iterable[str] = ()) -> Callable:
    """Decorator: cache the step ``name`` across runs in the catalog (see the module docstring). ``files``: argument
    names holding file or folder paths, keyed by content; ``ignore``: arguments that do not change the result."""
    files, ignore = tuple(files), set(ignore) | set(ALWAYS_IGNORED)

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        missing = {"catalog_url", "run_id"} - set(sig.parameters)
        if missing:
            raise TypeError(f"step {name}: a cached step takes catalog_url and run_id (missing {sorted(missing)})")

        if "step_cache" in sig.parameters:
            raise TypeError(f"step {name}: 'step_cache' is the cache switch every cached step takes; rename it")

        def keyed(args, kwargs):
            """(bound arguments, canonical inputs, code version, key); key None when an input has no canonical
            form."""
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            try:
                inputs = {k: (file_digest(v) if k in files else canonical(v)) for k, v in a.items()
                          if k not in ignore}
            except Uncacheable:
                return bound, None, None, None
            code = code_version(fn.__module__)
            return bound, inputs, code, cache_key(name, inputs, code)

        def use_cache(step_cache: bool | None) -> bool:
            return enabled() if step_cache is None else bool(step_cache)

        def finished(*args, step_cache: bool | None = None, **kwargs) -> dict[str, Any] | None:
            """The stored ``completed`` row (source_run_id, result) the call would reuse, or None (it would run);
            writes nothing. Lets a flow run a step it will only replay in its own process, skipping dispatch."""
            bound, _, _, key = keyed(args, kwargs)
            if key is None or not use_cache(step_cache):
                return None
            from forgeflow.catalog import open_catalog

            a = bound.arguments
            return lookup(open_catalog(a["catalog_url"], endpoint_url=a.get("endpoint_url")), key)

        @functools.wraps(fn)
        def step(*args, step_cache: bool | None = None, **kwargs):
            bound, inputs, code, key = keyed(args, kwargs)
            if key is None:
                return fn(*bound.args, **bound.kwargs)
            a = bound.arguments
            from forgeflow.catalog import open_catalog

            cat = open_catalog(a["catalog_url"], endpoint_url=a.get("endpoint_url"))
            t0 = time.perf_counter()
            hit = lookup(cat, key) if use_cache(step_cache) else None
            if hit is not None:
                cat.append(TABLE, [_row(key, name, code, "reused", hit["source_run_id"], inputs, hit["result"],
                                        time.perf_counter() - t0)], run_id=a["run_id"],
                           description=f"step {name} reused from run {hit['source_run_id']}")
                return json.loads(hit["result"])
            out = fn(*bound.args, **bound.kwargs)
            seconds = time.perf_counter() - t0
            try:
                payload = json.dumps(out, default=_json_default, sort_keys=True)
            except (TypeError, ValueError):
                return out  # a result with no JSON form cannot be found through the catalog: not cached
            cat.append(TABLE, [_row(key, name, code, "completed", a["run_id"], inputs, payload, seconds)],
                       run_id=a["run_id"], idempotency_key=f"step-cache:{key}", description=f"step {name} finished")
            return out

        # the public signature (what Prefect binds and records) is the step's own plus the keyword-only switch
        params = list(sig.parameters.values())
        switch = inspect.Parameter("step_cache", inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation="bool | None")
        at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
        step.__signature__ = sig.replace(parameters=params[:at] + [switch] + params[at:])
        step.cached_step_name = name
        step.finished = finished
        return step

    return wrap
