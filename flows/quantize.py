"""`forgeflow quantize`: train (or reuse) a model, measure per-layer Hessian sensitivity, allocate bits with the ILP
under the requested budgets, sweep size budgets, and evaluate every plan on held-out data.

Steps (coarse Prefect tasks on Dask, each writing to the catalog under this run's id):
1. quantize-train        -> quant_models (+ the weights as a safetensors object)
2. quantize-sensitivity  -> quant_sensitivities
3. quantize-plan         -> quant_plans, quant_evaluations, a PNG of accuracy vs size (catalog object)
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.runtime import open_flow_catalog, recorded_run, step_cache
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.quantize.pipeline import QuantizeRequest, validate_request
from forgeflow.tasks.quantize.steps import plan_step, sensitivity_step, train_model_step

STEPS = ["train", "sensitivity", "plan"]


def run_quantize_steps(cat_url: str, run_id: str, request: QuantizeRequest, s3_endpoint: str | None) -> dict:
    """The three steps in order (shared by the quantize flow and `forgeflow optimize`)."""
    total = len(STEPS)
    report("quantize: train", 0, total)
    record = train_model_step.submit(cat_url, run_id, request, s3_endpoint, step_cache=step_cache()).result()
    report("quantize: sensitivity", 1, total)
    sens = sensitivity_step.submit(cat_url, run_id, record, request, s3_endpoint, step_cache=step_cache()).result()
    report("quantize: plan", 2, total)
    plan = plan_step.submit(cat_url, run_id, record, request, s3_endpoint, sens.get("rows_run_id"),
                           step_cache=step_cache()).result()
    report("quantize: plan", 3, total)
    return {"model_record": record, "sensitivity": sens, **plan}


@flow(name="quantize", log_prints=False)
def quantize_flow(request: dict[str, Any], catalog: str | None = None, s3_endpoint: str | None = None
                  ) -> dict[str, Any]:
    """Run the quantize steps for ``request`` (``QuantizeRequest.to_dict()``); return a JSON-able summary."""
    req = QuantizeRequest.from_dict(request)
    from forgeflow.flows.model_policy import enforce_model_policy

    enforce_model_policy([req.model])
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    validate_inputs(req, cat)  # before the run row: a served or deployed run with bad input writes nothing
    with recorded_run(cat, "quantize", req.to_dict()) as run:
        out = run_quantize_steps(cat.url, run.id, req, settings.s3_endpoint)
        run.summary.update({k: out[k] for k in ("bits", "status", "objective", "accuracy", "float_accuracy")})
        result = {"run_id": run.id, "catalog": cat.url, **out}
    publish_quantize(result, cat)
    return result


def publish_quantize(result: dict[str, Any], cat=None) -> None:
    from forgeflow.flows.artifacts import publish

    totals = result["totals"]
    md = (f"Run `{result['run_id']}` in catalog `{result['catalog']}`.\n\n"
          f"- model: `{result['model']}`; layers: {', '.join(result['layers'])}\n"
          f"- plan (bits per layer): {result['bits']} ({result['status']}, objective {result['objective']:.6g}, "
          f"dual bound {result['dual_bound']:.6g})\n"
          f"- size {totals['size_bytes']:.0f} bytes, BOPs {totals['bops']:.4g}"
          + (f", latency {totals['latency_ms']:.4g} ms" if totals.get("latency_ms") is not None else "") + "\n"
          f"- held-out accuracy {result['accuracy']:.4f} (float {result['float_accuracy']:.4f})\n")
    publish("quantize", f"forgeflow quantize {result['model']}", md, table=result["plans"],
            plots=[("accuracy vs model size (PNG)", result["plot"])], catalog=cat)


def validate_inputs(request: QuantizeRequest, cat=None) -> None:
    """Everything checkable before the run starts (nothing is written on bad input); once per process."""
    validate_once("quantize", request.to_dict(), getattr(cat, "url", None), lambda: validate_request(request, cat))


# models whose training/calibration data ships with forgeflow; other models need `forgeflow quantize --data`
BUNDLED_DATA_MODELS = ("forgeflow:digits_cnn", "forgeflow:digits_mlp")


def quantize_in_optimize(cat_url: str, run_id: str, model: str, s3_endpoint: str | None) -> dict[str, Any]:
    """The quantize step of `forgeflow optimize`: a plan at the size of uniform 4-bit weights (pinned nothing),
    or ``{"skipped": reason}`` for a model without bundled data (Hessians need labelled calibration batches)."""
    from forgeflow.tasks.quantize.pipeline import uniform_size_budget

    if model not in BUNDLED_DATA_MODELS:
        return {"skipped": f"no bundled calibration data for {model}; run `forgeflow quantize --model {model} "
                           "--data DATA.npz`"}
    req = QuantizeRequest(model=model, epochs=15, hutchinson_samples=64, pareto_points=5,
                          size_budget=uniform_size_budget(model, 4))
    out = run_quantize_steps(cat_url, run_id, req, s3_endpoint)
    return {k: out[k] for k in ("layers", "bits", "status", "objective", "dual_bound", "totals", "budgets",
                                "accuracy", "float_accuracy", "plot")}
