"""Prefect @task wrappers for pipeline partitioning (the only Prefect import of this domain).

The step opens the catalog from its URL, solves the graph stored there (restarts and MIP solves fan out over the
Dask cluster the task runs on) and writes the result tables and plot back under the run's id.
"""

from __future__ import annotations

import contextlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from catalog import open_catalog
from tasks.partition.store import partition_catalog_graph


def _enter_dask_client(stack: contextlib.ExitStack):
    """A client of the Dask cluster this task runs on, or None off Dask (serial).

    ``distributed.worker_client`` secedes this task from its worker thread while the fanned-out work runs (and
    rejoins at the end), so the fan-out cannot deadlock even on a one-thread cluster; prefect_dask's
    ``get_dask_client`` keeps the thread and would wait forever for its own worker there.
    """
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return None
    return stack.enter_context(worker_client())


@task(name="partition-graph", retries=0, cache_policy=NO_CACHE, persist_result=False)
def partition_step(catalog_url: str, run_id: str, graph_id: str, stages: int, time_limit: float = 60.0,
                   memory_cap: float | None = None, seed: int = 0, endpoint_url: str | None = None) -> dict:
    """Partition catalog graph ``graph_id`` into at most ``stages`` stages within ``time_limit`` seconds. Not retried:
    the solve is deterministic up to its time limit, so a failure would repeat."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    with contextlib.ExitStack() as stack:
        client = _enter_dask_client(stack)
        return partition_catalog_graph(cat, run_id, graph_id, stages, time_limit=time_limit, memory_cap=memory_cap,
                                       seed=seed, executor=client)
