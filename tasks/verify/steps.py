"""Prefect @task wrappers for verification (the only Prefect import of this domain).

One coarse task: prepare the networks (training or loading the model, quantizing it under the plan), fan the
instances out over the Dask cluster the task runs on (one future per image x eps x network), record the answers.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.dask_fanout import step_executor
from forgeflow.tasks.verify.pipeline import VerifyRequest, decide_all, parse_eps, prepare, record


@task(name="verify-instances", retries=0, cache_policy=NO_CACHE)
def verify_step(catalog_url: str, run_id: str, request: VerifyRequest, endpoint_url: str | None = None) -> dict:
    """Decide every instance and write verify_results / verify_networks; returns the summary."""
    t0 = time.perf_counter()
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    prep = prepare(cat, run_id, request)
    eps = parse_eps(request.eps)
    with step_executor() as executor:
        rows = decide_all(prep, eps, request.time_limit, executor=executor)
    out = record(cat, run_id, prep, rows, eps)
    return {"model": prep.model_spec, "plan": prep.plan, "act_bits": prep.act_bits, "eps": list(eps),
            "images": len(prep.images), "accuracy": prep.accuracy, **out, "step_seconds": time.perf_counter() - t0}
