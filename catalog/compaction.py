"""Compaction of many small files into few, safe while writers append, readers read and other compactors run.

Commit protocol (no lock server; needs only an exclusive create, which both backends have: a hard link, i.e. an
``O_EXCL`` create, on disk and a conditional PUT ``If-None-Match: *`` on S3):

1. list the visible files of a partition (see :func:`snapshot`) and read them; files that do not decode, or whose
   columns cannot be carried into one schema, are left out (``catalog verify`` names them);
2. write the merged rows as one or more ``compact-...`` files (invisible: no committed log names them yet);
3. write ONE log ``_compactions/<id>.json`` naming every input (with its row count) and every output;
4. **claim** each input, in key order, by an exclusive create of ``_claims/<sha256(input)>.json`` naming the log.
   The log is *committed* exactly when every one of its inputs' claims names it. A claim is never replaced, so two
   compactions can never both commit the same input: whichever creates the claim first owns that input for good.
   A compaction that finds an input already claimed by another log has lost: it removes the claims it made (its
   log can never commit now), its log and its outputs;
5. write ``_compactions/<id>.done`` (a cache of "committed": readers then skip reading claims) and only then delete
   the inputs. Inputs are deleted only by the compaction that committed them (or by a later compaction cleaning up
   a dead one's leftovers), so no input that another log can still claim is ever deleted.

A compactor killed at any point loses nothing: before its last claim its inputs stay visible and its outputs stay
hidden; after it, its outputs are visible and its inputs hidden (and deleted later). A dead compactor's partial
claims keep those inputs out of later compactions until its log is *settled* (:func:`settle_stale`): once a log has
been pending longer than the grace period (``FORGEFLOW_COMPACTION_GRACE_S``, default one hour: far longer than any
compaction's claim phase, so its compactor is taken as dead), the next compaction takes it over with an exclusive
``<id>.settle`` marker (so exactly one process settles it) and either *finishes* it -- every input unclaimed or
claimed by it, every output present with its logged row count: it makes the missing claims, exactly as its compactor
would have -- or *voids* it (an input claimed by another log, or an output missing): it removes its claims, its
outputs and its log. A compactor that finds its log taken over before it commits backs off without deleting anything.

Visibility is a pure function of (files, logs, claims) -- :func:`visible_from`: a ``compact-`` file is visible
while a committed log names it as an output and no committed log names it as an input; any other data file is
visible unless a committed log names it as an input. Readers take the committed set, list the files, take the
committed set again and retry when it changed (:func:`snapshot`), so a compaction committing between the two
passes can never hide rows from them.

Logs written by forgeflow before this protocol (``{"output": key, "replaced": [...]}``) are all finished; they are
taken as committed in name order as they were then.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from forgeflow.catalog.errors import CatalogError
from forgeflow.catalog.store import Store, new_file_name

if TYPE_CHECKING:  # pragma: no cover
    from forgeflow.catalog.catalog import Catalog
    from forgeflow.catalog.schema import TableSpec

log = logging.getLogger(__name__)


def claim_key(table: str, input_key: str) -> str:
    return f"tables/{table}/_claims/{hashlib.sha256(input_key.encode()).hexdigest()[:40]}.json"


def is_data_file(key: str) -> bool:
    return key.endswith(".parquet") and "/_" not in key


@dataclass
class LogState:
    """The compaction logs of one table as seen at one moment."""

    logs: dict[str, dict] = field(default_factory=dict)  # log key -> log (new and legacy formats)
    committed: list[str] = field(default_factory=list)  # committed log keys, in name order
    pending: list[str] = field(default_factory=list)  # logs not (yet) committed
    bad: dict[str, str] = field(default_factory=dict)  # log key -> why it cannot be parsed

    def inputs(self, key: str) -> list[str]:
        lg = self.logs[key]
        return list(lg["inputs"]) if "inputs" in lg else list(lg.get("replaced", ()))

    def outputs(self, key: str) -> list[str]:
        lg = self.logs[key]
        return list(lg["outputs"]) if "outputs" in lg else [lg["output"]]

    def hidden(self) -> set[str]:
        return {f for k in self.committed for f in self.inputs(k)}

    def visible_outputs(self) -> set[str]:
        return {f for k in self.committed for f in self.outputs(k)}


_LOG_CACHE: dict[tuple[str, str], dict] = {}  # (store url, log key) -> log: logs are immutable once written


def _read_json(store: Store, key: str, cache: bool = False) -> dict | None:
    ck = (store.url, key)
    if cache and ck in _LOG_CACHE:
        return _LOG_CACHE[ck]
    try:
        value = json.loads(store.get(key))
    except FileNotFoundError:
        return None
    if cache:
        _LOG_CACHE[ck] = value
    return value


def _claim_owner(store: Store, table: str, input_key: str) -> str | None:
    claim = _read_json(store, claim_key(table, input_key))
    return None if claim is None else claim.get("log")


def log_state(store: Store, table: str) -> LogState:
    """Read every compaction log of ``table`` and decide which are committed (see the module docstring)."""
    keys = store.list(f"tables/{table}/_compactions")
    done = {k[: -len(".done")] + ".json" for k in keys if k.endswith(".done")}
    state = LogState()
    legacy: list[str] = []
    for k in keys:
        if not k.endswith(".json"):
            continue
        try:
            lg = _read_json(store, k, cache=True)
        except (ValueError, UnicodeDecodeError) as exc:
            state.bad[k] = f"not JSON: {exc}"
            continue
        if lg is None:
            continue  # deleted by a compaction that lost its race
        if not isinstance(lg, dict) or not (("inputs" in lg and "outputs" in lg) or "output" in lg):
            state.bad[k] = "not a compaction log"
            continue
        state.logs[k] = lg
        if "inputs" not in lg:
            legacy.append(k)
    # legacy logs: the first in name order to replace a file wins (all of them finished long ago)
    taken: set[str] = set()
    legacy_ok = set()
    for k in sorted(legacy):
        ins = set(state.inputs(k))
        if ins & taken:
            continue
        taken |= ins
        legacy_ok.add(k)
    for k in sorted(state.logs):
        if k in legacy_ok or k in done:
            state.committed.append(k)
        elif k in legacy:
            state.pending.append(k)
        else:
            ins = state.inputs(k)
            if ins and all(_claim_owner(store, table, f) == k for f in ins):
                state.committed.append(k)
            else:
                state.pending.append(k)
    return state


def visible_from(files: Iterable[str], state: LogState) -> list[str]:
    hidden = state.hidden()
    outputs = state.visible_outputs()
    out = []
    for f in files:
        if f in hidden:
            continue
        if posixpath.basename(f).startswith("compact-") and f not in outputs:
            continue  # an uncommitted or losing compaction's output
        out.append(f)
    return sorted(out)


def snapshot(store: Store, table: str, attempts: int = 20) -> tuple[list[str], LogState, list[str]]:
    """(visible files, log state, all data files): logs, then a listing, then logs again -- retried until no
    compaction committed in between, so rows are never missing from what a reader is told to read."""
    for attempt in range(attempts):
        before = log_state(store, table)
        files = [k for k in store.list(f"tables/{table}") if is_data_file(k)]
        after = log_state(store, table)
        if before.committed == after.committed:
            return visible_from(files, after), after, files
        time.sleep(min(0.01 * (attempt + 1), 0.2))
    raise CatalogError(f"table {table!r} kept changing under compaction for {attempts} attempts; try again")


# ---------------------------------------------------------------- compaction


def _read_input(store: Store, key: str) -> pa.Table | None:
    try:
        return pq.read_table(io.BytesIO(store.get(key)))
    except FileNotFoundError:
        return None
    except Exception as exc:  # 0-byte, truncated or not Parquet: leave it for `catalog verify` to name
        log.warning("compaction skips %s: cannot decode Parquet: %s", key, str(exc).splitlines()[0])
        return None


def _target_schema(spec: "TableSpec", tables: dict[str, pa.Table]) -> pa.Schema | None:
    """The declared file schema plus any column a newer forgeflow added (carried, never dropped); None when two
    files disagree on an extra column's type (the partition is then left as it is)."""
    schema = spec.file_schema
    extra: dict[str, pa.Field] = {}
    for t in tables.values():
        for f in t.schema:
            if f.name in schema.names:
                continue
            if f.name in extra and extra[f.name].type != f.type:
                return None
            extra.setdefault(f.name, f)
    for f in extra.values():
        schema = schema.append(f)
    return schema


def _conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _version_of(t: pa.Table, default: int) -> int:
    try:
        return int((t.schema.metadata or {}).get(b"forgeflow.schema_version", default))
    except ValueError:
        return default


def compact_table(cat: "Catalog", spec: "TableSpec", *, min_files: int = 2, max_rows_per_file: int = 5_000_000,
                  settle_after_s: float | None = None, _pause=None) -> int:
    """Compact every partition of ``spec`` holding at least ``min_files`` files; return the number of files removed.

    Compactions pending longer than ``settle_after_s`` are settled first (None: never).
    ``_pause(step)`` is a test hook called between the protocol's steps."""
    from forgeflow.catalog.catalog import parquet_bytes

    store = cat.store
    visible, state, all_files = snapshot(store, spec.name)
    if state.pending and settle_after_s is not None:
        settled = settle_stale(store, spec.name, settle_after_s, state)
        if settled["finished"] or settled["voided"]:
            visible, state, all_files = snapshot(store, spec.name)
    # leftovers of compactions that committed and died before deleting their inputs
    hidden = state.hidden()
    for f in all_files:
        if f in hidden:
            store.delete(f)
    removed = 0
    groups: dict[str, list[str]] = {}
    for f in visible:
        groups.setdefault(posixpath.dirname(f), []).append(f)
    locked = {f for k in state.pending for f in state.inputs(k)}  # claimed (maybe) by a live or dead compaction
    for part_dir, files in sorted(groups.items()):
        files = [f for f in files if f not in locked]
        if len(files) < min_files:
            continue
        tables = {}
        for f in files:
            t = _read_input(store, f)
            if t is not None:
                tables[f] = t
        if len(tables) < min_files:
            continue
        schema = _target_schema(spec, tables)
        if schema is None:
            log.warning("compaction of %s skipped: files disagree on the type of a column this forgeflow does not "
                        "know", part_dir)
            continue
        try:
            merged = pa.concat_tables([_conform_to(t, schema) for t in tables.values()])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            log.warning("compaction of %s skipped: %s", part_dir, str(exc).splitlines()[0])
            continue
        version = max([spec.version] + [_version_of(t, spec.version) for t in tables.values()])
        meta = dict(spec.full_schema.metadata or {})
        meta[b"forgeflow.schema_version"] = str(version).encode()
        merged = merged.replace_schema_metadata(meta)
        inputs = {f: t.num_rows for f, t in sorted(tables.items())}
        cid = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        outputs: dict[str, int] = {}
        for i, start in enumerate(range(0, max(merged.num_rows, 1), max_rows_per_file)):
            chunk = merged.slice(start, max_rows_per_file)
            key = f"{part_dir}/{new_file_name('compact')}"
            store.put(key, parquet_bytes(chunk))
            outputs[key] = chunk.num_rows
        log_key = f"tables/{spec.name}/_compactions/{cid}.json"
        store.put(log_key, json.dumps({"id": cid, "table": spec.name, "partition": part_dir, "inputs": inputs,
                                       "outputs": outputs, "rows": merged.num_rows, "schema_version": version,
                                       "created_ns": time.time_ns()}).encode())
        if _pause:
            _pause("logged")
        won, mine = _claim_all(store, spec.name, list(inputs), log_key, _pause)
        if won is None:
            continue  # unknown outcome of a claim (store error): leave everything; no input is deleted
        if not won:
            for f in mine:  # our log can never commit now: free the inputs we hold for other compactions
                store.delete(claim_key(spec.name, f))
            store.delete(log_key)
            for out in outputs:
                store.delete(out)
            continue
        if store.exists(log_key[: -len(".json")] + ".settle"):
            continue  # stalled past the grace period and taken over by a settler: its decision stands
        store.put(log_key[: -len(".json")] + ".done", b"")
        if _pause:
            _pause("committed")
        for f in inputs:
            store.delete(f)
        removed += len(inputs)
    return removed


DEFAULT_GRACE_S = 3600.0


def check_grace_s(value) -> float:
    """How long a compaction may stay uncommitted before another one settles it, in seconds (>= 0), or a
    CatalogError naming the value. The user sets it as FORGEFLOW_COMPACTION_GRACE_S, read by flows' Settings and
    passed down through ``open_catalog(..., compaction_grace_s=)``."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise CatalogError(f"compaction grace period {value!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise CatalogError(f"compaction grace period must be >= 0 seconds, got {value!r}")
    return seconds


def _created_ns(log_key: str, lg: dict) -> int:
    try:
        return int(lg.get("created_ns") or posixpath.basename(log_key).split("-", 1)[0])
    except (TypeError, ValueError):
        return 0


def _rows_of(store: Store, key: str) -> int | None:
    try:
        return pq.ParquetFile(io.BytesIO(store.get(key))).metadata.num_rows
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - undecodable
        return None


def settle_stale(store: Store, table: str, older_than_s: float, state: LogState | None = None) -> dict[str, int]:
    """Finish or void every compaction of ``table`` pending for longer than ``older_than_s`` (see the module
    docstring); return {"finished": n, "voided": n}. Its inputs are compactable again either way."""
    state = state or log_state(store, table)
    now = time.time_ns()
    out = {"finished": 0, "voided": 0}
    for lk in list(state.pending):
        lg = state.logs[lk]
        if "inputs" not in lg or not isinstance(lg.get("outputs"), dict):
            continue  # a legacy log that lost its race long ago: it hides nothing, leave it
        if now - _created_ns(lk, lg) < older_than_s * 1e9:
            continue
        base = lk[: -len(".json")]
        if not store.create(base + ".settle", json.dumps({"settled_ns": now}).encode()):
            continue  # another process is settling (or settled) it
        inputs = sorted(lg["inputs"])
        owners = {f: _claim_owner(store, table, f) for f in inputs}
        finish = all(o in (None, lk) for o in owners.values()) and \
            all(_rows_of(store, o) == n for o, n in lg["outputs"].items()) and \
            all(store.exists(f) for f, o in owners.items() if o is None)
        if finish:
            body = json.dumps({"log": lk}).encode()
            for f in inputs:
                if owners[f] is None and not store.create(claim_key(table, f), body) and \
                        _claim_owner(store, table, f) != lk:
                    finish = False  # claimed by another log meanwhile: void instead
                    owners = {g: _claim_owner(store, table, g) for g in inputs}
                    break
        if finish:
            store.put(base + ".done", b"")
            for f in inputs:
                store.delete(f)
            out["finished"] += 1
            log.warning("settled compaction %s: finished for its dead compactor (%d files)", lk, len(inputs))
            continue
        for f, o in owners.items():
            if o == lk:  # only this settler (it holds the .settle marker) removes claims naming this log
                store.delete(claim_key(table, f))
        for o in lg["outputs"]:
            store.delete(o)
        store.delete(lk)
        out["voided"] += 1
        log.warning("settled compaction %s: voided (it could not commit); its inputs are compactable again", lk)
    return out


def _claim_all(store: Store, table: str, inputs: list[str], log_key: str, pause=None) -> tuple[bool | None, list[str]]:
    """Claim every input for ``log_key`` in key order: (True, all) when this log committed, (False, claimed so far)
    when another log owns one of them, (None, ...) when a claim's outcome is unknown."""
    mine: list[str] = []
    body = json.dumps({"log": log_key}).encode()
    for f in sorted(inputs):
        try:
            created = store.create(claim_key(table, f), body)
        except Exception:  # noqa: BLE001 - the PUT may or may not have landed: ask the store
            try:
                created = _claim_owner(store, table, f) == log_key
            except Exception:  # noqa: BLE001
                return None, mine
        if not created:
            owner = _claim_owner(store, table, f)
            if owner != log_key:
                return False, mine
        mine.append(f)
        if pause:
            pause("claimed")
    return True, mine


def compaction_map(cat: "Catalog", table: str, state: LogState | None = None) -> dict[str, list[str]]:
    """Replaced file -> the files now holding its rows (follows chains of compactions)."""
    state = state or log_state(cat.store, table)
    forward: dict[str, list[str]] = {}
    for k in state.committed:
        for f in state.inputs(k):
            forward[f] = state.outputs(k)
    resolved: dict[str, list[str]] = {}

    def follow(f: str, seen: frozenset) -> list[str]:
        if f not in forward or f in seen:
            return [f]
        return [g for out in forward[f] for g in follow(out, seen | {f})]

    for f in forward:
        resolved[f] = sorted(set(follow(f, frozenset())))
    return resolved


__all__ = ["compact_table", "settle_stale", "check_grace_s", "DEFAULT_GRACE_S", "visible_from", "log_state", "snapshot", "compaction_map", "LogState", "claim_key"]
