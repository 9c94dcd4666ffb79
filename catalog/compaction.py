"""Compaction of many small files into few, safe while writers append and readers read.

Protocol (no locks, works on S3's atomic PUTs):
1. list the visible ``part-``/``compact-`` files of a partition, read them, write their rows as one new
   ``compact-...`` file (invisible: no log names it yet);
2. write a log ``_compactions/<time>-<uuid>.json`` = {"output": key, "replaced": [keys]} -- the commit point;
3. delete the replaced files (readers already ignore them; a reader that listed them before retries).

Visibility is a pure function of (files, logs) -- :func:`visible_from`: logs are taken in name order and a log is
committed unless it replaces a file an earlier committed log already replaced (two compactions racing: the later
one loses and removes its output). Replaced files of committed logs are hidden; a ``compact-`` file is visible only
while a committed log names it as output. Files appended during a compaction are not in its log, so none is lost.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from typing import TYPE_CHECKING, Iterable

import pyarrow as pa
import pyarrow.dataset as ds

from catalog.store import new_file_name

if TYPE_CHECKING:  # pragma: no cover
    from catalog.catalog import Catalog
    from catalog.schema import TableSpec


def effective_compactions(logs: Iterable[tuple[str, dict]]) -> list[dict]:
    """Committed compaction logs, in commit order."""
    replaced: set[str] = set()
    committed = []
    for _, log in sorted(logs, key=lambda kv: kv[0]):
        inputs = set(log.get("replaced", ()))
        if inputs & replaced:
            continue  # lost a race with an earlier compaction of the same files
        replaced |= inputs
        committed.append(log)
    return committed


def visible_from(files: Iterable[str], logs: Iterable[tuple[str, dict]], exists: set[str] | None = None) -> list[str]:
    committed = effective_compactions(logs)
    hidden = {f for log in committed for f in log.get("replaced", ())}
    outputs = {log["output"] for log in committed}
    out = []
    for f in files:
        if f in hidden:
            continue
        if posixpath.basename(f).startswith("compact-") and f not in outputs:
            continue  # an uncommitted or losing compaction's output
        out.append(f)
    return sorted(out)


def _partition_dir(key: str) -> str:
    return posixpath.dirname(key)


def compact_table(cat: "Catalog", spec: "TableSpec", *, min_files: int = 2, max_rows_per_file: int = 5_000_000) -> int:
    """Compact every partition of ``spec`` holding at least ``min_files`` files; return the number of files removed."""
    from catalog.catalog import parquet_bytes

    removed = 0
    groups: dict[str, list[str]] = {}
    for f in cat.visible_files(spec.name):
        groups.setdefault(_partition_dir(f), []).append(f)
    fs, root = cat.store.arrow_filesystem()
    for part_dir, files in sorted(groups.items()):
        if len(files) < min_files:
            continue
        dataset = ds.dataset([f"{root}/{f}" for f in files], schema=spec.file_schema, format="parquet", filesystem=fs)
        try:
            table = dataset.to_table()
        except FileNotFoundError:
            continue  # another compaction got there first
        table = table.replace_schema_metadata(spec.full_schema.metadata)
        outputs = []
        for start in range(0, max(table.num_rows, 1), max_rows_per_file):
            chunk = table.slice(start, max_rows_per_file)
            key = f"{part_dir}/{new_file_name('compact')}"
            cat.store.put(key, parquet_bytes(chunk))
            outputs.append(key)
        # one log per output; the first log replaces all inputs, later ones none (so all commit together)
        log_keys = []
        for i, out in enumerate(outputs):
            log_key = f"tables/{spec.name}/_compactions/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"
            log = {"output": out, "replaced": files if i == 0 else [], "table": spec.name,
                   "rows": table.num_rows, "created_ns": time.time_ns()}
            cat.store.put(log_key, json.dumps(log).encode())
            log_keys.append(log_key)
        committed = {l["output"] for l in effective_compactions(cat._compaction_logs(spec))}
        if outputs[0] not in committed:  # lost a race: undo our output, keep theirs
            for out, lk in zip(outputs, log_keys):
                cat.store.delete(lk)
                cat.store.delete(out)
            continue
        for f in files:
            cat.store.delete(f)
        removed += len(files)
    return removed


def compaction_map(cat: "Catalog", table: str) -> dict[str, str]:
    """Replaced file -> file now holding its rows (follows chains of compactions)."""
    from catalog.tables import get_table

    committed = effective_compactions(cat._compaction_logs(get_table(table)))
    forward = {f: log["output"] for log in committed for f in log.get("replaced", ())}
    resolved = {}
    for f in forward:
        cur = f
        seen = set()
        while cur in forward and cur not in seen:
            seen.add(cur)
            cur = forward[cur]
        resolved[f] = cur
    return resolved


__all__ = ["compact_table", "visible_from", "effective_compactions", "compaction_map", "pa"]
