"""What every flow needs: the Dask task runner, the catalog, and the run record (runs rows + lineage)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from forgeflow.catalog import Catalog, open_catalog
from forgeflow.flows.settings import Settings
from forgeflow.tasks.errors import ForgeflowError

_SECRET = re.compile(r"(secret|password|passwd|token|credential|access_key|private_key|api_key)", re.I)


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters safe to store: values of secret-looking keys are replaced, URLs lose user:password."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if _SECRET.search(str(k)):
            out[k] = "***"
        elif isinstance(v, str):
            out[k] = re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", v)
        elif isinstance(v, Mapping):
            out[k] = redact(v)
        else:
            out[k] = v
    return out


def forgeflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("forgeflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def task_runner_for(settings: Settings, heavy: bool = True):
    """The task runner of a command's flow, by one rule:

    - a Dask scheduler given (``--dask-address`` / ``FORGEFLOW_DASK_ADDRESS``): prefect-dask's runner on it;
    - light work (``heavy=False``: steps that read, import or solve a graph or an instance file, no torch): Prefect's
      ThreadPoolTaskRunner in the command's own process, no cluster to start (a few ms against seconds);
    - heavy work (profiling, training, quantization, federated rounds, supernet search: torch, which wants its own
      processes and every core): the LocalCluster this command started early (``start_cluster_early``), else the
      `forgeflow up` scheduler when one is running, else a new LocalCluster whose workers report to this command's
      Prefect API (``PREFECT_API_URL`` in their environment) instead of starting temporary servers of their own.
    """
    import os

    from forgeflow.flows.api import ensure_api, warm_dask_address

    ensure_api()  # the one API of this command, in the environment every worker started from here inherits
    # idle OpenMP threads spinning on shared cores slow torch ~10x on a busy 2-core machine; workers inherit this
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if settings.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=settings.dask_address)
    if not heavy:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max(2, settings.dask_workers * settings.dask_threads))
    from prefect_dask import DaskTaskRunner

    early = _take_early_cluster()
    if early is not None:  # started by this command while it imported and validated (start_cluster_early)
        return DaskTaskRunner(address=early.scheduler_address)
    warm = warm_dask_address()
    if warm:
        return DaskTaskRunner(address=warm)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs=local_cluster_kwargs(settings, current_api_url()))


#: what the workers of every heavy LocalCluster import as they start (tasks/dask_worker.py): every heavy step runs
#: torch inside a Prefect task
WORKER_IMPORTS = ("prefect", "torch")


def local_cluster_kwargs(settings: Settings, api_url: str | None, imports: tuple[str, ...] = ()) -> dict[str, Any]:
    """The LocalCluster of a heavy command: its workers report to ``api_url`` (never a server of their own) and
    import ``WORKER_IMPORTS`` plus ``imports`` in the background as they start."""
    import os

    import dask

    from forgeflow.tasks.dask_worker import IMPORTS_ENV, PRELOAD

    # idle OpenMP threads spinning on shared cores slow torch ~10x on a busy 2-core machine; workers inherit this
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env = {"OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"],
           IMPORTS_ENV: ",".join(dict.fromkeys((*WORKER_IMPORTS, *imports)))}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return {
        "n_workers": settings.dask_workers,
        "threads_per_worker": settings.dask_threads,
        "processes": True,
        "memory_limit": settings.dask_memory_limit,
        "dashboard_address": None,
        "env": env,
        # the user's worker preloads, then ours (imports at start; a closing worker's exit skips its full GC scan)
        "preload": [*(dask.config.get("distributed.worker.preload", None) or []), PRELOAD],
    }


# ---------------------------------------------------------------------------------------------- the early cluster
_early: dict[str, Any] = {}


def start_cluster_early(settings: Settings, imports: tuple[str, ...] = ()) -> bool:
    """Start this command's LocalCluster now, in a background thread, so that it and its workers' imports come up
    while the command imports and validates (seconds of a cold start), instead of at the flow's first step. Only
    where ``task_runner_for(settings, heavy=True)`` would start a new LocalCluster (no ``--dask-address``, no
    `forgeflow up` scheduler); its workers report to the API ``ensure_api`` will choose (started now if it is this
    command's temporary one). The flow then runs on it (``task_runner_for``); ``stop_early_cluster`` closes it at the
    command's end, or at once when the command fails before its flow. Returns whether one was started."""
    import threading

    from forgeflow.flows.api import planned_api_url, warm_dask_address

    if _early or settings.dask_address or warm_dask_address():
        return False
    kwargs = local_cluster_kwargs(settings, planned_api_url(), imports)

    def start() -> None:
        try:
            from distributed import LocalCluster

            _early["cluster"] = LocalCluster(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - task_runner_for then starts one the usual way
            _early["error"] = exc

    _early["thread"] = t = threading.Thread(target=start, name="forgeflow-early-cluster", daemon=True)
    t.start()
    return True


def _take_early_cluster():
    """The early cluster once it is up (waited for), or None (none started, or its start failed)."""
    t = _early.get("thread")
    if t is None:
        return None
    t.join()
    return _early.get("cluster")


def stop_early_cluster(timeout: float = 10.0) -> None:
    """Close the early cluster (its workers, nannies and scheduler), if this command started one; idempotent."""
    t = _early.get("thread")
    if t is None:
        return
    t.join(timeout)  # a start still under way (Ctrl-C during validation) ends first; the command reaps the rest
    cluster = _early.get("cluster")
    _early.clear()
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close(timeout=timeout)


def current_api_url() -> str | None:
    """The Prefect API this process talks to (environment or Prefect's settings), or None for ephemeral mode."""
    import os

    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    try:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    except Exception:
        return None


def check_dask_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast, with one clear message, when a given Dask scheduler cannot be reached."""
    if not address:
        return
    from distributed import Client

    try:
        with Client(address, timeout=timeout):
            pass
    except (OSError, TimeoutError) as exc:
        raise ForgeflowError(f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}") from None


def step_cache() -> bool:
    """The command's ``FORGEFLOW_STEP_CACHE`` (its settings, read in the flow's process). Every cached step is
    submitted with ``step_cache=step_cache()``, so the switch travels with the task: a worker of a warm `forgeflow up`
    cluster, started with other settings, obeys the command that sent the step."""
    from forgeflow.flows.settings import load_settings

    return load_settings().step_cache


def open_flow_catalog(catalog: str | None, s3_endpoint: str | None) -> tuple[Settings, Catalog]:
    """A flow's settings (its ``catalog`` / ``s3_endpoint`` parameters over FORGEFLOW_*, as the CLI's flags are)
    and its opened catalog: the one way every flow starts."""
    from forgeflow.flows.settings import load_settings

    settings = load_settings(catalog=catalog, s3_endpoint=s3_endpoint)
    return settings, open_settings_catalog(settings)


def open_settings_catalog(settings: Settings) -> Catalog:
    """The settings' catalog, its SQL queries held to the settings' timeout and memory limit, its compactions to the
    settings' grace period."""
    return open_catalog(settings.catalog, endpoint_url=settings.s3_endpoint, query_timeout_s=settings.query_timeout_s,
                        query_memory=settings.query_memory, compaction_grace_s=settings.compaction_grace_s)


@dataclass
class RunRecord:
    """A run in progress; ``summary`` is stored with the final runs row."""

    id: str
    flow: str
    catalog_url: str
    summary: dict[str, Any] = field(default_factory=dict)


def _flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:  # outside a flow run
        return None


@contextlib.contextmanager
def recorded_run(cat: Catalog, flow: str, parameters: Mapping[str, Any], run_id: str | None = None
                 ) -> Iterator[RunRecord]:
    """Write a 'running' row now and a 'completed' or 'failed' row at the end (with the error and summary)."""
    rec = RunRecord(run_id or uuid.uuid4().hex, flow, cat.url)
    started = dt.datetime.now(dt.timezone.utc)
    base = {"flow": flow, "parameters": json.dumps(redact(parameters), default=str, sort_keys=True),
            "started_at": started, "forgeflow_version": forgeflow_version(), "flow_run_id": _flow_run_id()}
    cat.append("runs", [{**base, "status": "running"}], run_id=rec.id)
    try:
        yield rec
    except BaseException as exc:
        msg = str(exc) if isinstance(exc, ForgeflowError) else f"{type(exc).__name__}: {exc}"
        cat.append("runs", [{**base, "status": "failed", "ended_at": dt.datetime.now(dt.timezone.utc),
                             "error": msg[:2000] or traceback.format_exc(limit=1),
                             "summary": json.dumps(rec.summary, default=str)}], run_id=rec.id)
        raise
    cat.append("runs", [{**base, "status": "completed", "ended_at": dt.datetime.now(dt.timezone.utc),
                         "summary": json.dumps(rec.summary, default=str)}], run_id=rec.id)
