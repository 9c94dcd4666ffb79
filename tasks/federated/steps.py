"""Prefect @task wrapper for federated training (the only Prefect import of this domain).

The step runs on a Dask worker and fans client training out over the same cluster through
``prefect_dask.get_dask_client()`` (one future per sampled client per round); off Dask it runs clients inline.
"""

from __future__ import annotations

import contextlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from catalog import open_catalog
from tasks.step_cache import cached_step, step_options
from tasks.federated.config import FederatedConfig
from tasks.federated.pipeline import federate_and_store


@contextlib.contextmanager
def _seceded():
    """Give this task's worker thread back to the Dask worker while the round loop waits on client futures.

    ``get_dask_client`` opens a plain client to the scheduler; the step itself keeps occupying a worker thread, so on
    a cluster with one single-threaded worker the client tasks would never start. Seceding frees the slot."""
    try:
        from distributed import get_worker, rejoin, secede

        get_worker()
    except (ImportError, ValueError):  # not on a Dask worker
        yield
        return
    secede()
    try:
        yield
    finally:
        rejoin()


@task(name="federated-training", cache_policy=NO_CACHE, **step_options())
@cached_step("federated-training")
def federated_training_step(catalog_url: str, run_id: str, config: dict, data: str | None = None,
                            endpoint_url: str | None = None) -> dict:
    """Run (or, on a retry or a re-run with the same configuration, resume) a federated training into the catalog."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    cfg = FederatedConfig.from_dict(config)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_seceded())
        client = None
        try:
            from prefect_dask import get_dask_client

            client = stack.enter_context(get_dask_client())
        except Exception:  # not on a Dask task runner: clients run inline in this process
            client = None
        return federate_and_store(cat, run_id, cfg, data, executor=client)
