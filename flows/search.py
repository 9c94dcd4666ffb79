"""`forgeflow search`: train an elastic supernet once, fit accuracy/latency predictors, and search the Pareto front
of (accuracy, latency) with surrogate-assisted NSGA-II, candidates evaluated in batches on Dask.

Steps (coarse Prefect tasks, each writing to the catalog under this run's id):
1. supernet-train   -> supernet_models (+ the weights as a safetensors object)
2. supernet-search  -> supernet_predictors, search_candidates, search_fronts (+ a PNG of the front), supernet_gaps
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.runtime import open_flow_catalog, recorded_run, step_cache
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.supernet.pipeline import SearchRequest, SearchRequestError

STEPS = ["train", "search"]


def validate_inputs(request: SearchRequest, cat=None) -> None:
    """Everything checkable before the run starts (nothing is written on bad input); once per process."""
    validate_once("search", request.to_dict(), getattr(cat, "url", None), lambda: _validate(request, cat))


def _validate(request: SearchRequest, cat) -> None:
    import pyarrow.compute as pc

    from forgeflow.tasks.supernet.train import load_dataset, supernet_config_for

    request.validate()
    data = load_dataset(request.dataset, seed=request.seed)  # raises DatasetError on a missing or malformed file
    space = supernet_config_for(data).space
    if request.supernet_run is not None and cat is not None:
        try:
            rows = cat.read("supernet_models", filter=pc.field("run_id") == request.supernet_run).to_pylist()
        except Exception:
            rows = []
        if not rows:
            raise SearchRequestError(f"run {request.supernet_run} trained no supernet in catalog {cat.url}")
        from forgeflow.tasks.supernet.pipeline import _config_from_json

        space = _config_from_json(rows[-1]["config_json"]).space
    if request.latency_device is not None and cat is not None:
        from forgeflow.tasks.latency.store import device_latency

        device_latency(cat, request.latency_device, space)  # unknown device or another space: one clear error


def run_search_steps(cat_url: str, run_id: str, request: SearchRequest, s3_endpoint: str | None) -> dict[str, Any]:
    from forgeflow.tasks.supernet.steps import search_step, train_supernet_step

    total = len(STEPS)
    report("search: train supernet", 0, total)
    record = train_supernet_step.submit(cat_url, run_id, request, s3_endpoint, step_cache=step_cache()).result()
    report("search: predictors + search", 1, total)
    out = search_step.submit(cat_url, run_id, record, request, s3_endpoint, step_cache=step_cache()).result()
    report("search: predictors + search", 2, total)
    return {"supernet": record | {"config_json": None}, **out}


@flow(name="search", log_prints=False)
def search_flow(request: dict[str, Any], catalog: str | None = None, s3_endpoint: str | None = None) -> dict[str, Any]:
    """Run the search steps for ``request`` (``SearchRequest.to_dict()``); return a JSON-able summary."""
    req = SearchRequest.from_dict(request)
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    validate_inputs(req, cat)  # before the run row: a served or deployed run with bad input writes nothing
    with recorded_run(cat, "search", req.to_dict()) as run:
        out = run_search_steps(cat.url, run.id, req, settings.s3_endpoint)
        run.summary.update({"status": out["status"], "evaluations": out["evaluations"],
                            "front_size": len(out["front"]), "best": out["best"]})
        result = {"run_id": run.id, "catalog": cat.url, "latency_limit_ms": req.latency_limit_ms,
                  "budget": req.budget, **out}
    publish_search(result, cat)
    return result


def publish_search(result: dict[str, Any], cat=None) -> None:
    from forgeflow.flows.artifacts import publish

    p = result["predictors"]
    best = result["best"]
    md = (f"Run `{result['run_id']}` in catalog `{result['catalog']}`.\n\n"
          f"- supernet `{result['supernet']['supernet_id']}`\n"
          f"- predictors on held-out subnets: accuracy Spearman {p['accuracy_spearman']:.3f} "
          f"(RMSE {p['accuracy_rmse']:.2f} pp), latency Spearman {p['latency_spearman']:.3f} "
          f"(RMSE {p['latency_rmse']:.3f} ms)\n"
          f"- search: {result['evaluations']} subnets evaluated of a budget of {result['budget']} "
          f"({result['status']}), {len(result['front'])} on the Pareto front\n")
    src = result.get("latency_source") or {}
    if src.get("device", "local-cpu") != "local-cpu":
        md += (f"- latency predicted for device `{src['device']}` (fitted from {src['n_measurements']} measurements, "
               f"leave-one-out log error {src['loo_log_rmse']:.3f})\n")
    if result["latency_limit_ms"] is not None:
        md += (f"- best under {result['latency_limit_ms']:g} ms: " +
               (f"`{best['arch']}` {best['accuracy_pct']:.2f} % at {best['latency_ms']:.3f} ms\n" if best
                else "none of the evaluated subnets fits\n"))
    for g in result.get("gaps", []):
        md += f"- `{g['arch']}`: extracted {g['extracted_accuracy_pct']:.2f} %, from scratch {g['scratch_accuracy_pct']:.2f} %\n"
    publish("search", "forgeflow search", md, table=result["front"], plots=[("Pareto front (PNG)", result["plot"])],
            catalog=cat)


def search_in_optimize(cat_url: str, run_id: str, s3_endpoint: str | None) -> dict[str, Any]:
    """The search step of `forgeflow optimize`: a small digits supernet, trained briefly, searched with 32 subnets."""
    req = SearchRequest(epochs=3, budget=32, n_accuracy=16, n_latency=12, stage_channels=(8, 12, 16), latency_batch=16)
    out = run_search_steps(cat_url, run_id, req, s3_endpoint)
    return {k: out[k] for k in ("search_id", "status", "evaluations", "front", "plot", "predictors")}
