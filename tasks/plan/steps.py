"""Prefect @task wrappers for joint deployment plans (the only Prefect import of this domain)."""

from __future__ import annotations

import contextlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.dask_fanout import enter_worker_client
from forgeflow.tasks.plan.store import plan_catalog_instance


@task(name="plan-instance", retries=0, cache_policy=NO_CACHE, persist_result=False)
def plan_step(catalog_url: str, run_id: str, instance_key: str, name: str, time_limit: float = 60.0,
              front: int = 0, front_time_limit: float = 10.0, endpoint_url: str | None = None) -> dict:
    """Solve the catalog instance ``instance_key`` and write its plan (and budget front, fanned out over the Dask
    cluster this task runs on). Not retried: the solve is deterministic up to its time limit."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    with contextlib.ExitStack() as stack:
        client = enter_worker_client(stack)
        return plan_catalog_instance(cat, run_id, instance_key, name, time_limit=time_limit, front=front,
                                     front_time_limit=front_time_limit, executor=client)


@task(name="plan-model-instance", retries=0, cache_policy=NO_CACHE, persist_result=False)
def model_instance_step(catalog_url: str, run_id: str, model: str, target_path: str, input_shape: list[int] | None,
                        dataset: str | None, stages: int | None, budget: float | None,
                        endpoint_url: str | None = None) -> dict:
    """Profile ``model``, measure its sensitivities, build its instance on the target; store the instance JSON."""
    from forgeflow.tasks.plan.model_instance import model_instance
    from forgeflow.tasks.plan.store import put_instance
    from forgeflow.tasks.plan.target import load_target

    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    inst, info = model_instance(model, load_target(target_path), input_shape=input_shape, dataset=dataset,
                                k=stages, budget=budget)
    return {"instance_key": put_instance(cat, run_id, inst), "name": inst.name, **info}
