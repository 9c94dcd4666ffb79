"""Prefect @task wrappers for the supernet search (the only Prefect import of this domain).

Each step opens the catalog from its URL, runs one coarse piece of ``tasks.supernet.pipeline`` and writes its results
there. The search step fans candidate batches out over the Dask cluster the task runs on.
"""

from __future__ import annotations


from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.dask_fanout import step_executor
from forgeflow.tasks.step_cache import cached_step, step_options
from forgeflow.tasks.supernet.pipeline import (SearchRequest, compare_and_store, fit_and_store_predictors, search_and_store,
                                     train_and_store)


@task(name="supernet-train", cache_policy=NO_CACHE, **step_options())
@cached_step("supernet-train")
def train_supernet_step(catalog_url: str, run_id: str, request: SearchRequest, endpoint_url: str | None = None) -> dict:
    """Train the elastic supernet once (weights to the catalog, a supernet_models row) or reuse a previous run's."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    return train_and_store(cat, run_id, request)


@task(name="supernet-search", cache_policy=NO_CACHE, **step_options())
@cached_step("supernet-search")
def search_step(catalog_url: str, run_id: str, record: dict, request: SearchRequest,
                endpoint_url: str | None = None) -> dict:
    """Fit the predictors (supernet_predictors), run the evolutionary search with candidate batches on Dask
    (search_candidates, search_fronts, PNG), and optionally train a few front architectures from scratch
    (supernet_gaps)."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    fitted, predictors = fit_and_store_predictors(cat, run_id, record, request)
    with step_executor() as executor:
        out = search_and_store(cat, run_id, record, request, fitted, executor=executor)
    gaps = []
    if request.scratch_compare > 0:
        front = out["front"]
        step = max(1, len(front) // request.scratch_compare)
        archs = [p["arch"] for p in front[::step]][: request.scratch_compare]
        gaps = compare_and_store(cat, run_id, record, request, archs, fitted)
    return out | {"predictors": predictors, "gaps": gaps}
