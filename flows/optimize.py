"""`forgeflow optimize`: the end-to-end flow over one model and one deployment target.

Steps (each a coarse Prefect task running on Dask, each writing to the catalog under this run's id):
1. per-module parameter and FLOP counts (table model_summaries)
2. mixed-precision bit plan at the uniform-4-bit size, accuracy-checked (flows/quantize.py; quant_* tables)
3. pipeline partition over ``stages`` accelerators with a certified bound (flows/partition.py; graphs +
   partition_* tables)
4. a short federated training (FedAvg, 10 digits clients, 5 rounds) for models taking digits input
   (flows/federated.py; federated_* tables)
5. a small elastic supernet on digits, trained once, and its accuracy/latency Pareto front (flows/search.py;
   supernet_* and search_* tables)
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.progress import report
from flows.runtime import open_settings_catalog, recorded_run
from flows.settings import Settings
from tasks.models.spec import ModelSpec
from tasks.profiling.steps import summarize_model_step

STEPS = ["summary", "quantize", "partition", "federated", "search"]


@flow(name="optimize", log_prints=False)
def optimize_flow(model: str = "torchvision:resnet18", stages: int = 4, catalog: str | None = None,
                  s3_endpoint: str | None = None, input_shape: list[int] | None = None) -> dict[str, Any]:
    """Run every optimization step for ``model`` on ``stages`` pipelined accelerators; return a JSON-able summary."""
    from flows.partition import check_stages

    stages = check_stages(stages)  # a deployment's parameters skip the CLI's checks
    from flows.model_policy import enforce_model_policy

    enforce_model_policy([model])
    settings = Settings(catalog=catalog or Settings().catalog, s3_endpoint=s3_endpoint)
    cat = open_settings_catalog(settings)
    params = {"model": model, "stages": stages, "input_shape": input_shape}
    with recorded_run(cat, "optimize", params) as run:
        total = len(STEPS)
        report("summary", 0, total)
        summary = summarize_model_step.submit(cat.url, run.id, model, tuple(input_shape) if input_shape else None,
                                              settings.s3_endpoint).result()
        run.summary["model_summary"] = summary
        report("summary", 1, total)
        from flows.quantize import quantize_in_optimize

        run.summary["quantize"] = quantize_in_optimize(cat.url, run.id, model, settings.s3_endpoint)
        report("quantize", 2, total)
        from flows.partition import partition_in_optimize

        run.summary["partition"] = partition_in_optimize(cat.url, run.id, model, stages, settings.s3_endpoint,
                                                         input_shape)
        report("partition", 3, total)
        from flows.federated import federated_in_optimize

        run.summary["federated"] = federated_in_optimize(cat.url, run.id, model, settings.s3_endpoint)
        report("federated", 4, total)
        from flows.search import search_in_optimize

        run.summary["search"] = search_in_optimize(cat.url, run.id, settings.s3_endpoint)
        report("search", 5, total)
        result = {"run_id": run.id, "catalog": cat.url, "model": model, "stages": stages, **run.summary}
    _publish(result, cat)
    return result


def _publish(result: dict[str, Any], cat=None) -> None:
    from flows.artifacts import publish

    ms = result["model_summary"]
    rows = [{"step": "summary", "outcome": f"{ms['params']:,} params, {ms['flops']:,} FLOPs"}]
    plots = []
    for step in STEPS[1:]:
        info = result.get(step) or {}
        rows.append({"step": step, "outcome": info.get("skipped") or info.get("status") or "done"})
        for k, v in info.items():
            if isinstance(v, str) and v.startswith("objects/") and v.endswith(".png"):
                plots.append((f"{step} {k}", v))
    publish("optimize", f"forgeflow optimize {result['model']}",
            f"Run `{result['run_id']}` in catalog `{result['catalog']}`.\n\n"
            f"- parameters: {ms['params']:,}\n- FLOPs (multiply-add = 2): {ms['flops']:,}\n- modules: {ms['modules']}",
            table=rows, plots=plots, catalog=cat)


def validate_inputs(model: str, stages: int, input_shape: tuple[int, ...] | None = None) -> None:
    """Check what can be checked before anything runs, so that bad input writes nothing: the stage count, that the
    model resolves, and that it runs on the input shape (one forward pass at batch size 1)."""
    import torch

    from tasks.errors import ForgeflowError
    from tasks.models.spec import default_input_shape, resolve_model

    from flows.partition import check_stages

    check_stages(stages)
    module = resolve_model(ModelSpec.parse(model)).eval()
    shape = tuple(input_shape) if input_shape else default_input_shape(model)
    try:
        with torch.no_grad():
            module(torch.zeros((1, *shape[1:])))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ForgeflowError(f"model {model} cannot run on an input of shape {list(shape)}: {first}") from None
