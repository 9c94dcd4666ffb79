"""Prefect @task wrappers for pipeline partitioning (the only Prefect import of this domain).

The step opens the catalog from its URL, solves the graph stored there (restarts and MIP solves fan out over the
Dask cluster the task runs on) and writes the result tables and plot back under the run's id.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.dask_fanout import step_executor
from forgeflow.tasks.partition.store import partition_catalog_graph
from forgeflow.tasks.step_cache import cached_step, step_options


@task(name="partition-graph", cache_policy=NO_CACHE, **step_options())
@cached_step("partition-graph")
def partition_step(catalog_url: str, run_id: str, graph_id: str, stages: int, time_limit: float = 60.0,
                   memory_cap: float | None = None, seed: int = 0, endpoint_url: str | None = None) -> dict:
    """Partition catalog graph ``graph_id`` into at most ``stages`` stages within ``time_limit`` seconds."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    with step_executor() as executor:
        return partition_catalog_graph(cat, run_id, graph_id, stages, time_limit=time_limit, memory_cap=memory_cap,
                                       seed=seed, executor=executor)
