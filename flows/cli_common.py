"""Options and output helpers shared by every `forgeflow` command."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from functools import cached_property
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from forgeflow.flows import progress

CatalogOpt = typer.Option(None, "--catalog", help="Catalog URL: a folder, file://PATH or s3://bucket/prefix "
                          "[env FORGEFLOW_CATALOG; default ./.forgeflow/catalog]")
EndpointOpt = typer.Option(None, "--s3-endpoint", help="S3-compatible endpoint URL [env FORGEFLOW_S3_ENDPOINT]")
DaskOpt = typer.Option(None, "--dask-address", help="Dask scheduler tcp://HOST:PORT [env FORGEFLOW_DASK_ADDRESS; "
                       "default a LocalCluster]")
DataOpt = typer.Option(None, "--data", help="Data: .npz (arrays x, y; optional x_test, y_test) or .parquet (integer "
                       "column y plus a list column x or one numeric column per feature) [default: scikit-learn "
                       "digits]")
DatasetAliasOpt = typer.Option(None, "--dataset", hidden=True, help="Deprecated alias of --data")
JsonOpt = typer.Option(False, "--json", help="Print JSON on stdout (the last line is one JSON object) and nothing else")

err_console = Console(stderr=True)

#: set by ``flows.cli.main`` when the console command owns its process: a heavy command may then start its
#: LocalCluster early (``FlowCommand.start_cluster_early``); a call from Python (tests, the warm server's children)
#: starts it with its flow, as before
EARLY_CLUSTER = False


class FlowCommand:
    """The preamble and epilogue every flow command shares, in one order:

    1. ``--json`` quiets Prefect's console logs (stdout carries the JSON only);
    2. settings (flags over ``FORGEFLOW_*``); ``command.catalog`` opens the catalog on first use, at the latest
       before the flow starts, so a bad or unreachable one fails before anything runs;
    3. the command validates its inputs against ``command.catalog`` (a ForgeflowError becomes one line on stderr and
       exit code 2 in ``flows.cli.main``; nothing is written);
    4. ``run``: the Dask address is checked, the flow runs on the settings' task runner under a progress bar;
    5. ``emit``: ``--json`` prints one JSON object, otherwise the command's human-readable report.
    """

    def __init__(self, json_out: bool, catalog: Optional[str], s3_endpoint: Optional[str],
                 dask_address: Optional[str]) -> None:
        from forgeflow.flows.settings import load_settings

        quiet_prefect_for_json(json_out)
        self.json_out = json_out
        self.settings = load_settings(catalog=catalog, s3_endpoint=s3_endpoint, dask_address=dask_address)

    @cached_property
    def catalog(self):
        """The settings' catalog, opened on first use (a bad or unreachable one fails then, before any run; a
        command whose checks need no catalog creates no catalog folder when they fail)."""
        from forgeflow.flows.runtime import open_settings_catalog

        return open_settings_catalog(self.settings)

    def start_cluster_early(self, imports: tuple[str, ...] = ()) -> None:
        """A heavy command, its cheap checks passed: start its LocalCluster now (workers importing ``imports``), so
        it comes up while the command validates the rest (``flows.runtime.start_cluster_early``); console command
        only (``EARLY_CLUSTER``). ``run`` uses it; the command's end closes it, whatever happens in between."""
        if EARLY_CLUSTER:
            from forgeflow.flows.runtime import start_cluster_early

            start_cluster_early(self.settings, imports)

    def run(self, flow, *, heavy: bool = True, **parameters: Any) -> dict[str, Any]:
        """Run ``flow`` with ``parameters`` plus this command's catalog and S3 endpoint; return its result."""
        from forgeflow.flows.runtime import check_dask_address, stop_early_cluster, task_runner_for

        try:
            catalog = self.catalog
            check_dask_address(self.settings.dask_address)
            runner = task_runner_for(self.settings, heavy=heavy)
            with progress_bar(not self.json_out):
                return flow.with_options(task_runner=runner)(**parameters, catalog=catalog.url,
                                                             s3_endpoint=self.settings.s3_endpoint)
        finally:
            stop_early_cluster()

    def emit(self, result: Any, report: Callable[[], None]) -> None:
        """``--json``: ``result`` as one JSON line; otherwise ``report()`` prints for a person."""
        if self.json_out:
            emit_json(result)
        else:
            report()


def data_source(data: Any, dataset_alias: Any = None) -> Optional[str]:
    """The ``--data`` path as a string (``--dataset`` is its deprecated alias), or None for the default."""
    chosen = data if data is not None else dataset_alias
    return str(chosen) if chosen is not None else None


def emit_json(obj: Any) -> None:
    """One JSON object on one stdout line."""
    sys.stdout.write(json.dumps(obj, default=_json_default, sort_keys=True) + "\n")
    sys.stdout.flush()


def _json_default(v: Any) -> Any:
    import datetime as dt
    import decimal

    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return v.tolist()
    return str(v)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[None]:
    """A rich progress bar on stderr fed by flows.progress.report()."""
    if not enabled or not sys.stderr.isatty() and not _force_progress():
        yield
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def on_report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        progress.set_reporter(on_report)
        try:
            yield
        finally:
            progress.set_reporter(None)


def _force_progress() -> bool:
    from forgeflow.flows.settings import load_settings

    return load_settings().progress


def quiet_prefect_for_json(json_mode: bool) -> None:
    """With --json stdout carries JSON only: send Prefect's console logs to stderr at WARNING."""
    import logging
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING" if json_mode else "INFO")
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.WARNING if json_mode else logging.INFO)
    # Dask's cluster start/stop chatter is not the user's business
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)


OptStr = Optional[str]
