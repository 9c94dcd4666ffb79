"""Prefect @task wrappers of `forgeflow optimize`'s steps (the only Prefect import of this domain).

Each step opens the catalog from its URL, runs one coarse piece of ``tasks.deploy.pipeline`` and returns a small
JSON-able dict. Every step but the bundle (which writes a folder and measures a run) is cached across runs by
``tasks.step_cache`` on its inputs and the code version; in addition the trained supernet, the unit profile and the
layer sensitivities of a family are found in the catalog by content (family, host, microbatch), so a rerun on a new
target pays only for search, plan, check, bundle and report.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgeflow.catalog import open_catalog
from forgeflow.tasks.dask_fanout import step_executor
from forgeflow.tasks.step_cache import cached_step, step_options
from forgeflow.tasks.deploy import pipeline as P
from forgeflow.tasks.deploy.planner import ChainPlan
from forgeflow.tasks.deploy.target import target_from_json


def _family(cat, ctx: dict[str, Any]):
    return P.load_family(cat, ctx["family"], ctx["profile"], ctx["target"]["microbatch"], ctx.get("data"),
                         traces=ctx["profile"]["traces"])


def _latency(cat, ctx: dict[str, Any]):
    """The target's fitted device models, pinned at the run's start (None when the target names none)."""
    from forgeflow.tasks.deploy.device_latency import TargetLatency

    return TargetLatency.load(cat, ctx.get("latency_models"))


@task(name="optimize-supernet", cache_policy=NO_CACHE, **step_options())
@cached_step("optimize-supernet", files=("data",))
def supernet_step(catalog_url: str, run_id: str, family: str, data: str | None, endpoint_url: str | None = None
                  ) -> dict[str, Any]:
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    rec = P.resolve_family(cat, run_id, family, data)
    return {k: rec.get(k) for k in ("supernet_id", "config_json", "weights_key", "largest_accuracy_pct",
                                    "smallest_accuracy_pct", "cached", "source", "dataset")}


@task(name="optimize-profile", cache_policy=NO_CACHE, **step_options())
@cached_step("optimize-profile", files=("data",))
def profile_step(catalog_url: str, run_id: str, family: dict, microbatch: int, data: str | None,
                 endpoint_url: str | None = None) -> dict[str, Any]:
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    prof = P.profile_family(cat, run_id, family, microbatch, data)
    return prof | P.family_traces(cat, run_id, family, data)


@task(name="optimize-search", cache_policy=NO_CACHE, **step_options())
@cached_step("optimize-search")
def search_step(catalog_url: str, run_id: str, ctx: dict, budget: int, seed: int = 0,
                endpoint_url: str | None = None) -> dict[str, Any]:
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    fam = _family(cat, ctx)
    with step_executor() as executor:  # the Dask cluster the step runs on, else serially in this process
        return P.search_subnet(cat, run_id, fam, target_from_json(ctx["target"]), budget, seed, executor=executor,
                               memo_key=P.accuracy_memo_key(ctx["family"], ctx.get("data")),
                               family_id=ctx["family"]["supernet_id"], latency=_latency(cat, ctx))


@task(name="optimize-plan", cache_policy=NO_CACHE, **step_options())
@cached_step("optimize-plan")
def plan_step(catalog_url: str, run_id: str, ctx: dict, arch: str, endpoint_url: str | None = None) -> dict:
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    out = P.plan_chosen(_family(cat, ctx), arch, target_from_json(ctx["target"]), _latency(cat, ctx))
    out["plan_key"] = cat.put_object(P.json_bytes(out), suffix=".json", run_id=run_id)
    return out


@task(name="optimize-accuracy", cache_policy=NO_CACHE, **step_options())
@cached_step("optimize-accuracy")
def accuracy_step(catalog_url: str, run_id: str, ctx: dict, arch: str, plan: dict, endpoint_url: str | None = None
                  ) -> dict:
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    return P.check_accuracy(_family(cat, ctx), arch, ChainPlan.from_json(plan))


@task(name="optimize-finetune", cache_policy=NO_CACHE, **step_options())
@cached_step("optimize-finetune")
def finetune_step(catalog_url: str, run_id: str, ctx: dict, arch: str, plan: dict, clients: int, seed: int = 0,
                  endpoint_url: str | None = None) -> dict:
    """Federated QAT fine-tune of the planned subnet; every round's clients fan out over the Dask workers."""
    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    fam = _family(cat, ctx)
    with step_executor() as executor:
        return P.finetune_chosen(cat, run_id, fam, arch, ChainPlan.from_json(plan), clients, seed, executor=executor)


@task(name="optimize-bundle", cache_policy=NO_CACHE, **step_options())
def bundle_step(catalog_url: str, run_id: str, ctx: dict, arch: str, planned: dict, out_dir: str,
                microbatches: int = 48, endpoint_url: str | None = None, weights_key: str | None = None,
                act_qparams: dict | None = None) -> dict:
    """Export the bundle (the fine-tuned weights when ``weights_key`` is given, quantized with the activation ranges
    ``act_qparams`` the fine-tune trained with), then run it as k processes and measure it against the plan."""
    from forgeflow.tasks.deploy.pipeline_run import run_pipeline

    cat = open_catalog(catalog_url, endpoint_url=endpoint_url)
    fam = _family(cat, ctx)
    out = P.export_bundle(fam, arch, planned, target_from_json(ctx["target"]), out_dir, run_id,
                          state=P.load_finetuned(cat, weights_key), act_qparams=act_qparams)
    out["pipeline"] = run_pipeline(out["bundle"], microbatches=microbatches)
    return out
