"""Prefect @task wrappers for quantization (the only Prefect import of this domain).

Each step opens the catalog from its URL, runs one coarse piece of ``tasks.quantize.pipeline`` and writes its
results there; the next step reads them back. The Pareto sweep fans out over the Dask cluster the task runs on.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.dask_fanout import step_executor
from forgeflow.tasks.step_cache import cached_step, step_options
from forgeflow.tasks.quantize.pipeline import (ModelRecord, QuantizeRequest, plan_and_evaluate, sensitivities_to_catalog,
                                     train_and_store)


@task(name="quantize-train", cache_policy=NO_CACHE, **step_options())
@cached_step("quantize-train")
def train_model_step(catalog_url: str, run_id: str, request: QuantizeRequest,
                     endpoint_url: str | None = None) -> dict:
    """Train the model (weights to the catalog, a quant_models row) or reuse ``request.source_run``'s."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    return asdict(train_and_store(cat, run_id, request))


@task(name="quantize-sensitivity", cache_policy=NO_CACHE, **step_options())
@cached_step("quantize-sensitivity")
def sensitivity_step(catalog_url: str, run_id: str, record: dict, request: QuantizeRequest,
                     endpoint_url: str | None = None) -> dict:
    """Hutchinson traces and perturbations into quant_sensitivities."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    return sensitivities_to_catalog(cat, run_id, ModelRecord(**record), request)


@task(name="quantize-plan", cache_policy=NO_CACHE, **step_options())
@cached_step("quantize-plan")
def plan_step(catalog_url: str, run_id: str, record: dict, request: QuantizeRequest,
              endpoint_url: str | None = None, sensitivity_run: str | None = None) -> dict:
    """The ILP plan under the requested budgets, a size sweep (fanned out on Dask), accuracy of every plan, from the
    sensitivities ``sensitivity_run`` wrote (default this run)."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    with step_executor() as executor:
        return plan_and_evaluate(cat, run_id, ModelRecord(**record), request, executor=executor,
                                 sensitivity_run=sensitivity_run)
