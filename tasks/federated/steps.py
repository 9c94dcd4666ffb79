"""Prefect @task wrapper for federated training (the only Prefect import of this domain).

The step runs on a Dask worker and fans client training out over the same cluster through
``tasks.dask_fanout.step_executor`` (one future per sampled client per round); off Dask it runs clients inline.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.dask_fanout import step_executor
from forgeflow.tasks.federated.config import FederatedConfig
from forgeflow.tasks.federated.pipeline import federate_and_store
from forgeflow.tasks.step_cache import cached_step, step_options


@task(name="federated-training", cache_policy=NO_CACHE, **step_options())
@cached_step("federated-training")
def federated_training_step(catalog_url: str, run_id: str, config: dict, data: str | None = None,
                            endpoint_url: str | None = None) -> dict:
    """Run (or, on a retry or a re-run with the same configuration, resume) a federated training into the catalog."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    cfg = FederatedConfig.from_dict(config)
    with step_executor() as executor:
        return federate_and_store(cat, run_id, cfg, data, executor=executor)
