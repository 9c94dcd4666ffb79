"""`forgeflow catalog ls | query | show | get | compact | verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from forgeflow.flows.cli_common import CatalogOpt, EndpointOpt, JsonOpt, emit_json
from forgeflow.tasks.errors import ForgeflowError

catalog_app = typer.Typer(help="Browse and maintain the Parquet catalog.", no_args_is_help=True)


def _open(catalog: Optional[str], s3_endpoint: Optional[str]):
    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.flows.settings import load_settings

    return open_settings_catalog(load_settings(catalog=catalog, s3_endpoint=s3_endpoint))


def _print_table(rows: list[dict], title: str | None = None, max_rows: int = 50) -> None:
    table = Table(title=title, show_lines=False)
    cols = list(rows[0].keys()) if rows else []
    for c in cols:
        table.add_column(c, overflow="fold")
    for r in rows[:max_rows]:
        table.add_row(*[_cell(r[c]) for c in cols])
    Console().print(table)
    if len(rows) > max_rows:
        Console().print(f"... {len(rows) - max_rows} more rows (use --json for all)")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    s = "" if v is None else str(v)
    return s if len(s) <= 80 else s[:77] + "..."


@catalog_app.command("ls")
def ls(catalog: Optional[str] = CatalogOpt, s3_endpoint: Optional[str] = EndpointOpt, json_out: bool = JsonOpt):
    """List tables with their file and row counts, and the latest runs."""
    cat = _open(catalog, s3_endpoint)
    tables = []
    for name, spec in sorted(cat.tables().items()):
        files = cat.visible_files(name)
        rows = cat.count_rows(name) if files else 0
        tables.append({"table": name, "schema_version": spec.version, "files": len(files), "rows": rows,
                       "doc": spec.doc})
    runs = cat.runs().select(["run_id", "flow", "status", "started_at", "ended_at"]).to_pylist()
    if json_out:
        emit_json({"catalog": cat.url, "tables": tables, "runs": runs})
        return
    _print_table(tables, title=f"catalog {cat.url}")
    _print_table(runs, title="runs (newest first)", max_rows=20)


@catalog_app.command("query")
def query(sql: str = typer.Argument(..., help="One read-only SELECT; every table is a view by its name"),
          catalog: Optional[str] = CatalogOpt, s3_endpoint: Optional[str] = EndpointOpt, json_out: bool = JsonOpt,
          limit: int = typer.Option(50, "--limit", help="Rows shown in the table view (JSON shows all)")):
    """Run read-only SQL (DuckDB) over the catalog."""
    cat = _open(catalog, s3_endpoint)
    rows = cat.query(sql).to_pylist()
    if json_out:
        emit_json({"rows": rows, "count": len(rows)})
    else:
        _print_table(rows, max_rows=limit)


@catalog_app.command("show")
def show(run_id: str = typer.Argument(..., help="Run id"), catalog: Optional[str] = CatalogOpt,
         s3_endpoint: Optional[str] = EndpointOpt, json_out: bool = JsonOpt):
    """Show one run: its state, parameters, summary and everything it wrote."""
    import pyarrow.compute as pc

    cat = _open(catalog, s3_endpoint)
    run = cat.run(run_id)
    if run is None:
        raise ForgeflowError(f"no run {run_id!r} in catalog {cat.url}")
    arts = cat.read("artifacts", filter=pc.field("run_id") == run_id).to_pylist()
    written = {}
    for a in arts:
        k = a["table_name"] or a["kind"]
        written.setdefault(k, {"files": 0, "rows": 0, "bytes": 0})
        written[k]["files"] += 1
        written[k]["rows"] += a["num_rows"] or 0
        written[k]["bytes"] += a["num_bytes"] or 0
    run["parameters"] = _json_field(run, "parameters")
    run["summary"] = _json_field(run, "summary")
    if json_out:
        emit_json({"run": run, "written": written, "artifacts": arts})
        return
    con = Console()
    con.print(f"[bold]run {run_id}[/bold]  flow={run['flow']}  status={run['status']}  "
              f"started={run['started_at']}  ended={run['ended_at']}")
    if run.get("error"):
        con.print(f"[red]error:[/red] {run['error']}")
    con.print_json(json.dumps({"parameters": run["parameters"], "summary": run["summary"]}, default=str))
    _print_table([{"written": k, **v} for k, v in sorted(written.items())], title="written by this run")


def _json_field(run: dict, name: str):
    """A JSON column of a runs row; text that is not JSON (a foreign or damaged writer) is shown as it is."""
    raw = run.get(name)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {"_unparsed": raw, "_note": f"the run's {name} are not valid JSON; shown as stored"}


def _write_atomically(path, data: bytes):
    """Write ``data`` to ``path`` through a private temporary file in the same folder (mkstemp: never a fixed
    name a symlink could be planted at), then rename it over ``path``; a folder gets the key's file name."""
    import os
    import tempfile

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ForgeflowError(f"cannot write {path}: folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ForgeflowError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@catalog_app.command("get")
def get(key: str = typer.Argument(..., help="Object key, e.g. objects/ab/ab12....png (from `show --json`, an "
                                       "artifact or a table column)"),
        output: Optional[str] = typer.Option(None, "--output", "-o", help="File to write (default: the key's file "
                                             "name in the current folder; '-' writes to stdout)"),
        catalog: Optional[str] = CatalogOpt, s3_endpoint: Optional[str] = EndpointOpt, json_out: bool = JsonOpt):
    """Copy one stored object (a plot, weights, a trace) out of the catalog."""
    import sys
    from pathlib import Path

    cat = _open(catalog, s3_endpoint)
    data = cat.get_object(key)  # CatalogError (exit 1) names the key and the catalog when it is missing
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(output or key.rsplit("/", 1)[-1])
    if path.is_dir():
        path = path / key.rsplit("/", 1)[-1]
    _write_atomically(path, data)  # whole file or nothing: a failed copy leaves no truncated output
    if json_out:
        emit_json({"key": key, "path": str(path), "bytes": len(data)})
    else:
        Console().print(f"wrote {len(data):,} bytes to {path}")


@catalog_app.command("compact")
def compact(table: Optional[str] = typer.Option(None, "--table", help="Only this table"),
            catalog: Optional[str] = CatalogOpt, s3_endpoint: Optional[str] = EndpointOpt, json_out: bool = JsonOpt):
    """Merge each partition's small files into one (safe while flows are writing)."""
    cat = _open(catalog, s3_endpoint)
    removed = cat.compact(table)
    if json_out:
        emit_json({"removed_files": removed})
    else:
        for name, n in sorted(removed.items()):
            print(f"{name}: {n} files merged")


@catalog_app.command("verify")
def verify(catalog: Optional[str] = CatalogOpt, s3_endpoint: Optional[str] = EndpointOpt, json_out: bool = JsonOpt,
           strict: bool = typer.Option(False, "--strict", help="Also fail (exit 1) on orphans")):
    """Check every file decodes, every lineage reference resolves and report orphans; exit 1 on damage."""
    from forgeflow.catalog.verify import ORPHAN, verify_catalog

    report = verify_catalog(_open(catalog, s3_endpoint))
    if json_out:
        emit_json(report.to_dict())
    else:
        d = report.to_dict()
        print(f"catalog {d['catalog']}: {d['files_checked']} data files, {d['objects_checked']} objects, "
              f"{d['lineage_rows']} lineage rows checked; {d['damage']} damaged, {d['orphans']} orphans, "
              f"{d['notices']} notices")
        for f in report.findings:
            print(f"{f.severity:<7} {f.kind:<30} {f.path}  {f.message}")
    if report.damaged or (strict and report.count(ORPHAN)):
        import sys

        sys.exit(1)  # not typer.Exit: with standalone_mode=False click returns its code instead of exiting


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
