"""``forgeflow catalog verify``: is the catalog whole?

Checks, on any store (local folder or S3):
- every visible data file of every table decodes completely, with columns the table's schema can read, and holds
  the number of rows its lineage row says (damage otherwise);
- every compaction log parses; every output of a committed compaction exists or was itself compacted by a later
  committed compaction (chains are followed), holds the rows its log says, and each log's outputs hold as many rows
  as its inputs did (damage otherwise: its inputs are hidden, so a missing output means lost rows);
- every lineage reference (``artifacts.path``) resolves: a table file directly or through the chain of compaction
  logs (``catalog.compaction.compaction_map``), with the row count the log recorded for it; an object by its key
  (damage otherwise);
- every object's content still hashes to its content-addressed name (damage otherwise).

Reported without failing (``orphan``): visible data files or objects no lineage row names (e.g. a writer died
between its data file and its lineage row), uncommitted or losing compaction outputs, files of tables no module
declares, stale temporary files. ``notice``: inputs of committed compactions not yet deleted (harmless; readers
skip them; the next compaction deletes them), compactions that have not committed (running now, or killed before
their last claim: their inputs stay visible and are left out of later compactions).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from forgeflow.catalog.compaction import compaction_map, is_data_file, snapshot
from forgeflow.catalog.tables import all_tables

if TYPE_CHECKING:  # pragma: no cover
    from forgeflow.catalog.catalog import Catalog

DAMAGE, ORPHAN, NOTICE = "damage", "orphan", "notice"


@dataclass(frozen=True)
class Finding:
    severity: str  # damage | orphan | notice
    kind: str  # e.g. unreadable-file, dangling-lineage, orphan-file
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "kind": self.kind, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class VerifyReport:
    catalog: str
    findings: tuple[Finding, ...]
    files_checked: int
    objects_checked: int
    lineage_rows: int
    tables: dict[str, int] = field(default_factory=dict)  # table -> visible files

    @property
    def damaged(self) -> bool:
        return any(f.severity == DAMAGE for f in self.findings)

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)

    def to_dict(self) -> dict:
        return {"catalog": self.catalog, "ok": not self.damaged, "damage": self.count(DAMAGE),
                "orphans": self.count(ORPHAN), "notices": self.count(NOTICE), "files_checked": self.files_checked,
                "objects_checked": self.objects_checked, "lineage_rows": self.lineage_rows, "tables": self.tables,
                "findings": [f.to_dict() for f in self.findings]}


def _check_data_file(cat: "Catalog", table: str, key: str) -> tuple[int | None, Finding | None]:
    """(rows, problem) of one Parquet data file: decoded fully, columns checked against the table schema."""
    spec = all_tables()[table]
    try:
        data = cat.store.get(key)
        pf = pq.ParquetFile(io.BytesIO(data))
        content = pf.read()
    except FileNotFoundError:
        return None, Finding(DAMAGE, "missing-file", key, "listed but cannot be read (deleted while verifying?)")
    except Exception as exc:  # truncated, corrupt, not Parquet
        return None, Finding(DAMAGE, "unreadable-file", key, f"cannot decode Parquet: {str(exc).splitlines()[0]}")
    expected = spec.file_schema
    try:
        version = int((content.schema.metadata or {}).get(b"forgeflow.schema_version", spec.version))
    except ValueError:
        version = spec.version
    for f in content.schema:
        if f.name not in expected.names:
            if version > spec.version:
                continue  # a column a newer forgeflow added (compaction carries it): not ours to judge
            return content.num_rows, Finding(DAMAGE, "schema-mismatch", key,
                                             f"column {f.name!r} is not in table {table!r}")
        want = expected.field(f.name).type
        if f.type != want and not _castable(f.type, want):
            return content.num_rows, Finding(DAMAGE, "schema-mismatch", key,
                                             f"column {f.name!r} is {f.type}, table {table!r} declares {want}")
    return content.num_rows, None


def _castable(have: pa.DataType, want: pa.DataType) -> bool:
    try:
        pa.array([], type=have).cast(want)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False


def _check_object(cat: "Catalog", key: str) -> Finding | None:
    try:
        data = cat.store.get(key)
    except FileNotFoundError:
        return Finding(DAMAGE, "missing-object", key, "listed but cannot be read")
    except Exception as exc:
        return Finding(DAMAGE, "unreadable-object", key, f"cannot read: {type(exc).__name__}: {exc}")
    name = posixpath.basename(key)
    digest = name.split(".", 1)[0]
    if len(digest) == 64 and hashlib.sha256(data).hexdigest() != digest:
        return Finding(DAMAGE, "corrupt-object", key, "content does not match its SHA-256 name")
    return None


def verify_catalog(cat: "Catalog", *, threads: int = 8) -> VerifyReport:
    """Check every file, every lineage reference and every compaction of ``cat``; see the module docstring."""
    findings: list[Finding] = []
    tables = all_tables()
    by_table = _table_files(cat, tables, findings)
    visible, states = _check_compactions(cat, tables, by_table, findings)
    rows_in = _decode_visible_files(cat, visible, states, threads, findings)
    lineage = _read_lineage(cat, visible, rows_in, findings)
    object_keys = list(cat.store.list("objects"))
    referenced_files, referenced_objects = _check_lineage(cat, lineage, tables, states, rows_in, set(object_keys),
                                                          findings)
    _report_orphan_files(visible, referenced_files, findings)
    _check_objects(cat, object_keys, referenced_objects, threads, findings)
    for k in cat.store.list("_tmp"):
        findings.append(Finding(ORPHAN, "stale-temporary", k, "temporary file of an interrupted write"))

    order = {DAMAGE: 0, ORPHAN: 1, NOTICE: 2}
    findings.sort(key=lambda f: (order[f.severity], f.kind, f.path))
    return VerifyReport(catalog=cat.url, findings=tuple(findings), files_checked=sum(map(len, visible.values())),
                        objects_checked=len(object_keys), lineage_rows=len(lineage),
                        tables={t: len(v) for t, v in visible.items() if v})


def _table_files(cat: "Catalog", tables, findings: list[Finding]) -> dict[str, list[str]]:
    """Every file under tables/, by table; files of a table no module declares are orphans."""
    by_table: dict[str, list[str]] = {}
    for k in cat.store.list("tables"):
        parts = k.split("/")
        if len(parts) >= 3:
            by_table.setdefault(parts[1], []).append(k)
    for name in sorted(set(by_table) - set(tables)):
        findings.append(Finding(ORPHAN, "unknown-table", f"tables/{name}",
                                f"{len(by_table[name])} file(s) of a table no module declares"))
    return by_table


def _check_compactions(cat: "Catalog", tables, by_table: dict[str, list[str]], findings: list[Finding]):
    """Each table's compaction logs and visible files: (visible files by table, compaction state by table)."""
    visible: dict[str, list[str]] = {}
    states = {}
    hidden_leftovers: list[str] = []
    for name in sorted(tables):
        vis, state, data_files = snapshot(cat.store, name)
        states[name] = state
        _check_compaction_logs(state, set(data_files), findings)
        consumed, outputs = state.hidden(), state.visible_outputs()
        for k in data_files:
            if k in consumed:
                hidden_leftovers.append(k)
            elif posixpath.basename(k).startswith("compact-") and k not in outputs:
                findings.append(Finding(ORPHAN, "uncommitted-compaction-output", k,
                                        "output of a compaction that never committed (or lost a race)"))
        visible[name] = sorted(set(vis))
        for k in by_table.get(name, []):
            if not is_data_file(k) and not any(f"/{d}/" in k for d in ("_compactions", "_claims", "_keys")):
                findings.append(Finding(ORPHAN, "stray-file", k, "not a data file or catalog bookkeeping"))
    for k in hidden_leftovers:
        findings.append(Finding(NOTICE, "replaced-file-not-deleted", k,
                                "input of a committed compaction still present (readers skip it)"))
    return visible, states


def _check_compaction_logs(state, existing: set[str], findings: list[Finding]) -> None:
    """Logs parse; committed outputs exist (or were compacted again) and hold as many rows as their inputs."""
    for k, why in sorted(state.bad.items()):
        findings.append(Finding(DAMAGE, "bad-compaction-log", k, f"cannot parse: {why}"))
    consumed = state.hidden()
    for lk in state.committed:
        for out in state.outputs(lk):
            if out not in existing and out not in consumed:
                findings.append(Finding(DAMAGE, "missing-compaction-output", out,
                                        f"committed compaction {lk} of {len(state.inputs(lk))} file(s) lost "
                                        f"this output"))
        lg = state.logs[lk]
        if isinstance(lg.get("inputs"), dict) and isinstance(lg.get("outputs"), dict):
            n_in, n_out = sum(lg["inputs"].values()), sum(lg["outputs"].values())
            if n_in != n_out:
                findings.append(Finding(DAMAGE, "compaction-row-mismatch", lk,
                                        f"inputs held {n_in} rows, outputs {n_out}"))
    for lk in state.pending:
        findings.append(Finding(NOTICE, "compaction-not-committed", lk,
                                f"a compaction of {len(state.inputs(lk))} file(s) that has not committed (running "
                                f"now, or killed before its last claim); its inputs stay visible, and the first "
                                f"compaction after FORGEFLOW_COMPACTION_GRACE_S (default 1 h) finishes or "
                                f"voids it"))


def _logged_rows(states, side: str) -> dict[str, int]:
    """Rows per file that committed compaction logs recorded for their ``inputs`` or ``outputs``."""
    rows: dict[str, int] = {}
    for state in states.values():
        for lk in state.committed:
            files = state.logs[lk].get(side)
            if isinstance(files, dict):
                rows.update(files)
    return rows


def _decode_visible_files(cat: "Catalog", visible: dict[str, list[str]], states, threads: int,
                          findings: list[Finding]) -> dict[str, int | None]:
    """Decode every visible data file (rows, or None when it does not decode); every committed output must hold
    the rows its log recorded."""
    jobs = [(t, k) for t, keys in visible.items() for k in keys]
    rows_in: dict[str, int | None] = {}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for (t, k), (rows, problem) in zip(jobs, pool.map(lambda tk: _check_data_file(cat, *tk), jobs)):
            rows_in[k] = rows
            if problem:
                findings.append(problem)
    for k, want in _logged_rows(states, "outputs").items():
        if rows_in.get(k) is not None and rows_in[k] != want:
            findings.append(Finding(DAMAGE, "row-count-mismatch", k,
                                    f"its compaction log says {want} rows, the file holds {rows_in[k]}"))
    return rows_in


def _read_lineage(cat: "Catalog", visible: dict[str, list[str]], rows_in: dict[str, int | None],
                  findings: list[Finding]) -> list[dict]:
    """The lineage rows of the artifacts files that decoded (damage in one file does not hide the rest)."""
    readable = [k for k in visible.get("artifacts", []) if rows_in.get(k) is not None]
    if not readable:
        return []
    try:
        return cat.dataset("artifacts", files=readable).to_table(
            columns=["run_id", "kind", "table_name", "path", "num_rows"]).to_pylist()
    except Exception as exc:
        findings.append(Finding(DAMAGE, "unreadable-lineage", "tables/artifacts",
                                f"cannot read the lineage table: {str(exc).splitlines()[0]}"))
        return []


def _check_lineage(cat: "Catalog", lineage: list[dict], tables, states, rows_in: dict[str, int | None],
                   object_set: set[str], findings: list[Finding]) -> tuple[set[str], set[str]]:
    """Every lineage reference resolves (a file directly or through compactions, with its rows; an object by key);
    returns the data files and objects the lineage names."""
    maps = {t: compaction_map(cat, t, states[t]) for t in tables}
    input_rows = _logged_rows(states, "inputs")
    referenced_files: set[str] = set()
    referenced_objects: set[str] = set()
    for row in lineage:
        path = row.get("path") or ""
        if not (row.get("kind") == "table" or path.startswith("tables/")):
            if path not in object_set:
                findings.append(Finding(DAMAGE, "dangling-lineage", path,
                                        f"run {row.get('run_id')} stored object {path} but it is missing"))
            referenced_objects.add(path)
            continue
        table = row.get("table_name") or (path.split("/")[1] if path.count("/") >= 2 else "")
        targets = [path] if path in rows_in else maps.get(table, {}).get(path, [])
        if not targets or any(t not in rows_in for t in targets):
            findings.append(Finding(DAMAGE, "dangling-lineage", path,
                                    f"run {row.get('run_id')} wrote it (table {table}) but neither it nor a "
                                    f"compaction holding its rows exists"))
            continue
        referenced_files.update(targets)
        n = row.get("num_rows")
        have = rows_in.get(path) if path in rows_in else input_rows.get(path)
        if n is not None and have is not None and have != n:
            findings.append(Finding(DAMAGE, "row-count-mismatch", path,
                                    f"lineage says {n} rows, the {'file' if path in rows_in else 'compaction log'}"
                                    f" says {have}"))
    return referenced_files, referenced_objects


def _report_orphan_files(visible: dict[str, list[str]], referenced_files: set[str], findings: list[Finding]) -> None:
    for t, keys in visible.items():
        if t == "artifacts":
            continue  # lineage rows describe the other tables; they carry no lineage of their own
        for k in keys:
            if k not in referenced_files and not posixpath.basename(k).startswith("compact-"):
                findings.append(Finding(ORPHAN, "orphan-file", k, "visible data file that no lineage row names "
                                        "(its writer may have died before recording it)"))


def _check_objects(cat: "Catalog", object_keys: list[str], referenced_objects: set[str], threads: int,
                   findings: list[Finding]) -> None:
    """Every object hashes to its name; objects no lineage row names are orphans."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for problem in pool.map(lambda k: _check_object(cat, k), object_keys):
            if problem:
                findings.append(problem)
    for k in object_keys:
        if k not in referenced_objects:
            findings.append(Finding(ORPHAN, "orphan-object", k, "object that no lineage row names"))
