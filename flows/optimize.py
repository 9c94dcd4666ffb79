"""`forgeflow optimize`: what to deploy on this target, and how good it provably is.

One pipeline for an elastic family (built-in: the digits family) on a hardware target file:

1. supernet  the family's trained supernet, found in the catalog (the built-in family's shipped checkpoint is imported
             once; ``--supernet train`` trains the elastic family on ``--data`` by progressive shrinking, once);
2. profile   every distinct unit of the family timed once on this host at the target's microbatch, and the
             supernet's layer sensitivities (Hessian traces) estimated once — both found in the catalog on reruns;
3. search    evolutionary search of subnets: accuracy from the supernet (extracted, BN-recalibrated), latency = the
             certified pipeline bottleneck of the candidate on the target from the joint placement-and-precision
             planner (tasks/plan), memoised per candidate; candidates fan out over Dask;
4. plan      the chosen subnet planned jointly on the target: stages, bits per unit, certified bound;
5. accuracy  the plan applied (fake-quantized weights, calibrated activations): held-out accuracy float vs quantized;
6. bundle    PLAN.json + one safetensors stage module per stage (hash-checked), then run as k processes to check
             pipelined == unsplit output and measure stage times against the plan's prediction;
7. report    one self-contained HTML page (catalog object + the run's Prefect artifact).

Every step is one coarse Prefect task (tasks/deploy/steps.py); results go to the catalog under the run's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.runtime import open_flow_catalog, recorded_run
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.deploy.request import DEFAULT_FAMILY, DEFAULT_TARGET, ModelJobRequest, OptimizeRequest
from forgeflow.tasks.models.spec import ModelSpec
from forgeflow.tasks.partition.request import check_stages
from forgeflow.tasks.profiling.steps import summarize_model_step

FAMILY_STEPS = ["supernet", "profile", "search", "plan", "accuracy", "bundle", "report"]


@flow(name="optimize-family", log_prints=False)
def optimize_family_flow(supernet: str = DEFAULT_FAMILY, target: str = DEFAULT_TARGET, data: str | None = None,
                  budget: int = 48, latency_limit_ms: float | None = None, min_accuracy_pct: float | None = None,
                  microbatch: int = 32, bundle_dir: str | None = None, catalog: str | None = None,
                  s3_endpoint: str | None = None, seed: int = 0, clients: int | None = None,
                  latency_device: str | None = None) -> dict[str, Any]:
    """Run every step for ``supernet`` on ``target``; return a JSON-able summary (the decision and its evidence). The
    parameters make an ``OptimizeRequest``, validated before the run row is written."""
    import time

    from forgeflow.tasks.deploy import steps as S
    from forgeflow.tasks.deploy.target import load_target

    req = OptimizeRequest.from_dict({"supernet": supernet, "target": target, "data": data, "budget": budget,
                                     "latency_limit_ms": latency_limit_ms, "min_accuracy_pct": min_accuracy_pct,
                                     "microbatch": microbatch, "bundle_dir": bundle_dir, "seed": seed,
                                     "clients": clients, "latency_device": latency_device})
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    validate_family_inputs(req, cat)  # before the run row: a served or deployed run with bad input writes nothing
    supernet, data, budget, seed, clients = req.supernet, req.data, req.budget, req.seed, req.clients
    tv = load_target(req.target, req.latency_device, latency_limit_ms=req.latency_limit_ms,
                     min_accuracy_pct=req.min_accuracy_pct, microbatch=req.microbatch)
    from forgeflow.tasks.deploy.pipeline import family_latency_models

    latency_models = family_latency_models(cat, tv, data)  # pinned: one fit for the whole run and its cached steps
    params = {k: v for k, v in req.to_dict().items() if k != "bundle_dir"}
    url, ep = cat.url, settings.s3_endpoint
    with recorded_run(cat, "optimize", params) as run:
        seconds: dict[str, float] = {}
        steps = FAMILY_STEPS if not clients else FAMILY_STEPS[:5] + ["finetune"] + FAMILY_STEPS[5:]
        total = len(steps)

        def timed(name: str, i: int, fn, *args, here: bool = False, **kw):
            report(name, i, total)
            t0 = time.perf_counter()
            # here=True runs the task in the flow's own process: the bundle step starts one process per pipeline
            # stage, which a Dask worker (a daemonic process) may not do; a step whose result the catalog already
            # holds only replays it, which costs a catalog read here against a dispatch (and a worker's imports)
            finished = getattr(getattr(fn, "fn", None), "finished", None)
            if finished is not None:  # a cached step: the command's cache switch travels with it
                kw["step_cache"] = settings.step_cache
            here = here or (finished is not None and finished(*args, **kw) is not None)
            out = fn(*args, **kw) if here else fn.submit(*args, **kw).result()
            seconds[name] = round(time.perf_counter() - t0, 3)
            report(name, i + 1, total)
            return out

        fam = timed("supernet", 0, S.supernet_step, url, run.id, supernet, data, ep)
        prof = timed("profile", 1, S.profile_step, url, run.id, fam, tv.microbatch, data, ep)
        ctx = {"family": fam, "profile": prof, "target": tv.to_json(), "data": data}
        if latency_models:
            ctx["latency_models"] = latency_models
        search = timed("search", 2, S.search_step, url, run.id, ctx, budget, seed, ep)
        arch = search["chosen"]["arch"]
        planned = timed("plan", 3, S.plan_step, url, run.id, ctx, arch, ep)
        acc = timed("accuracy", 4, S.accuracy_step, url, run.id, ctx, arch, planned["plan"], ep)
        fed = None
        if clients:
            fed = timed("finetune", 5, S.finetune_step, url, run.id, ctx, arch, planned["plan"], clients, seed, ep)
        out_dir = req.bundle_dir or str(Path(".forgeflow") / "bundles" / run.id)
        bundle = timed("bundle", total - 2, S.bundle_step, url, run.id, ctx, arch, planned, out_dir, 48, ep,
                       fed["weights_key"] if fed else None, fed.get("act_qparams") if fed else None, here=True)
        summary = summarize(run.id, cat.url, tv.to_json(), fam, prof, search, planned, acc, bundle, seconds, fed,
                            reused_steps(cat, run.id))
        report("report", total - 1, total)
        t0 = time.perf_counter()
        summary["report_key"] = write_report(cat, run.id, summary)
        seconds["report"] = round(time.perf_counter() - t0, 3)
        report("report", total, total)
        summary["task_runner"] = _task_runner_name()
        record_decision(cat, run.id, summary)
        run.summary.update({k: summary[k] for k in ("target", "chosen", "plan", "accuracy", "bundle", "seconds")})
    publish_report(summary, cat)
    return summary


def _task_runner_name() -> str:
    """Where the run's steps ran: ``DaskTaskRunner`` (a cluster) or ``ThreadPoolTaskRunner`` (this process)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return type(ctx.task_runner).__name__ if ctx is not None and ctx.task_runner is not None else "none"


def reused_steps(cat, run_id: str) -> dict[str, str]:
    """Step name (without the ``optimize-`` prefix) -> the run whose stored result this run replayed."""
    from forgeflow.tasks.step_cache import reuses

    return {r["step"].removeprefix("optimize-"): r["source_run_id"] for r in reuses(cat, run_id)
            if r["status"] == "reused"}


def provenance(fam: dict, prof: dict, reused: dict[str, str]) -> tuple[dict, dict]:
    """The summary's supernet and profile records with ``cached`` flags that tell the truth: a step replayed from an
    earlier run (``reused``) carries that run's result, whose flags say what *that* run found, so a replayed supernet
    or profile step is cached here whatever its stored flags say."""
    s = {k: fam.get(k) for k in ("supernet_id", "source", "cached", "largest_accuracy_pct", "smallest_accuracy_pct")}
    p = {k: prof.get(k) for k in ("profile_id", "units", "cached", "host", "traces_cached")}
    if "supernet" in reused:
        s["cached"], s["reused_from"] = True, reused["supernet"]
    if "profile" in reused:
        p["cached"], p["traces_cached"], p["reused_from"] = True, True, reused["profile"]
    return s, p


def summarize(run_id: str, url: str, target: dict, fam: dict, prof: dict, search: dict, planned: dict, acc: dict,
              bundle: dict, seconds: dict, fed: dict | None = None, reused: dict[str, str] | None = None
              ) -> dict[str, Any]:
    plan = planned["plan"]
    reused = reused or {}
    supernet, profile = provenance(fam, prof, reused)
    return {
        "run_id": run_id, "catalog": url,
        "target": {k: target[k] for k in ("name", "k", "memory_bytes", "speed", "bit_speedup", "bits",
                                          "link_bytes_per_s", "link_latency_ms", "budget_fraction", "latency_limit_ms",
                                          "min_accuracy_pct", "microbatch", "source", "digest")}
        | {"latency_models": target.get("latency_models")},
        "supernet": supernet,
        "profile": profile,
        "reused_steps": reused,
        "search": {k: search[k] for k in ("status", "evaluations", "infeasible", "front", "candidates", "why",
                                          "latency_limit_ms")}
        | {k: search.get(k) for k in ("accuracies_measured", "accuracies_reused")},
        "chosen": search["chosen"],
        "plan": plan, "host_stage_ms": planned["host_stage_ms"], "units": planned["units"],
        "latency_source": planned.get("latency_source"),
        "accuracy": {k: acc[k] for k in ("accuracy_float_pct", "accuracy_quantized_pct", "n_test")}
        | {"accuracy_finetuned_pct": fed["accuracy_after_pct"] if fed else None},
        "federated": fed,
        "layer_bits": acc["layer_bits"],
        "bundle": {k: bundle[k] for k in ("bundle", "stages", "plan_sha256", "boundaries")},
        "pipeline": bundle["pipeline"],
        "seconds": seconds,
    }


def write_report(cat, run_id: str, summary: dict[str, Any]) -> str:
    """The HTML page and its plots (PNG objects, keys in ``summary["plots"]``) into the catalog; the page's key."""
    from forgeflow.tasks.deploy.report import plot_pngs, render_html

    pngs = plot_pngs(summary)
    summary["plots"] = {name: cat.put_object(png, suffix=".png", run_id=run_id) for name, png in pngs.items()}
    return cat.put_object(render_html(summary, pngs).encode(), suffix=".html", run_id=run_id)


def record_decision(cat, run_id: str, summary: dict[str, Any]) -> None:
    from forgeflow.tasks.deploy.pipeline import json_bytes

    p, a = summary["plan"], summary["accuracy"]
    key = cat.put_object(json_bytes(summary), suffix=".json", run_id=run_id)
    cat.append("deploy_decisions", [{
        "target": summary["target"]["name"], "arch": summary["chosen"]["arch"], "planner": p["planner"], "k": p["k"],
        "bottleneck_ms": p["bottleneck_ms"], "lower_bound_ms": p["lower_bound_ms"], "ratio": p["ratio"],
        "accuracy_float_pct": a["accuracy_float_pct"], "accuracy_quantized_pct": a["accuracy_quantized_pct"],
        "accuracy_finetuned_pct": a["accuracy_finetuned_pct"], "bundle": summary["bundle"]["bundle"],
        "summary_key": key, "report_key": summary["report_key"]}], run_id=run_id)


def publish_report(summary: dict[str, Any], cat=None) -> None:
    """The run's Prefect artifact: the decision in markdown plus the report page's plots embedded."""
    from forgeflow.flows.artifacts import publish
    from forgeflow.tasks.deploy.report import markdown_summary

    publish("optimize", f"forgeflow optimize on {summary['target']['name']}", markdown_summary(summary),
            table=[{"stage": i, "units": ", ".join(s), "predicted_target_ms": summary["plan"]["stage_ms"][i],
                    "predicted_host_ms": summary["host_stage_ms"][i],
                    "measured_host_ms": summary["pipeline"]["stage_ms_measured"][i]}
                   for i, s in enumerate(summary["plan"]["stages"])],
            plots=[(f"{name} (from the HTML report)", key) for name, key in summary.get("plots", {}).items()],
            catalog=cat)


def needs_cluster(req: OptimizeRequest, cat) -> bool:
    """Whether the run has heavy work to fan out over Dask workers: training or importing the supernet, profiling
    its units, estimating its sensitivities (when the catalog does not hold them yet for this host and microbatch),
    or a federated fine-tune. Otherwise every step is seconds of work (the search plans and, at most, measures a
    few dozen subnets at ~0.2 s each, most of them read back from the catalog), and the run is faster in the
    command's own process than on a LocalCluster whose start and worker imports alone cost more."""
    from forgeflow.tasks.deploy.pipeline import cached_family

    if req.clients:
        return True
    return not all(cached_family(cat, req.supernet, req.data, req.microbatch).values())


def validate_family_inputs(req: OptimizeRequest, cat=None) -> None:
    """Everything checkable before a run starts (bad input writes nothing): the limits, the target file, the family,
    the data, and that the family's smallest subnet fits the target's memory at its smallest widths; once per
    process."""
    validate_once("optimize-family", req.to_dict(), getattr(cat, "url", None), lambda: _validate_family(req, cat))


def _validate_family(req: OptimizeRequest, cat) -> None:
    from forgeflow.tasks.deploy.pipeline import check_family_fits
    from forgeflow.tasks.deploy.target import load_target

    req.validate()
    tv = load_target(req.target, req.latency_device, latency_limit_ms=req.latency_limit_ms,
                     min_accuracy_pct=req.min_accuracy_pct, microbatch=req.microbatch)
    check_family_fits(req.supernet, req.data, tv, cat)


# --------------------------------------------------------------------------------------------------------------------
# `forgeflow optimize --model SPEC --stages K`: a fixed model (not rebuilt yet, see docs): per-module summary, a
# mixed-precision bit plan, a float pipeline partition, a short federated run and the digits supernet search, each a
# step of its own. Kept for fixed models and the scheduled deployments until the planner path covers them.
STEPS = ["summary", "quantize", "partition", "federated", "search"]


@flow(name="optimize", log_prints=False)
def optimize_flow(model: str = "torchvision:resnet18", stages: int = 4, catalog: str | None = None,
                  s3_endpoint: str | None = None, input_shape: list[int] | None = None) -> dict[str, Any]:
    """Run every optimization step for ``model`` on ``stages`` pipelined accelerators; return a JSON-able summary.
    The parameters make a ``ModelJobRequest``, validated before the run row is written."""
    from forgeflow.flows.model_policy import enforce_model_policy

    stages = check_stages(stages)  # one clear line for 2.5 or "x" (a deployment's parameters skip the CLI)
    enforce_model_policy([model])
    req = ModelJobRequest.from_dict({"model": model, "stages": stages, "input_shape": input_shape})
    validate_inputs(req)  # before the catalog and its run row: a served or deployed run with bad input writes nothing
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    input_shape = list(req.input_shape) if req.input_shape else None
    with recorded_run(cat, "optimize", req.to_dict()) as run:
        total = len(STEPS)
        report("summary", 0, total)
        summary = summarize_model_step.submit(cat.url, run.id, model, tuple(input_shape) if input_shape else None,
                                              settings.s3_endpoint, step_cache=settings.step_cache).result()
        run.summary["model_summary"] = summary
        report("summary", 1, total)
        from forgeflow.flows.quantize import quantize_in_optimize

        run.summary["quantize"] = quantize_in_optimize(cat.url, run.id, model, settings.s3_endpoint)
        report("quantize", 2, total)
        from forgeflow.flows.partition import partition_in_optimize

        run.summary["partition"] = partition_in_optimize(cat.url, run.id, model, stages, settings.s3_endpoint,
                                                         input_shape)
        report("partition", 3, total)
        from forgeflow.flows.federated import federated_in_optimize

        run.summary["federated"] = federated_in_optimize(cat.url, run.id, model, settings.s3_endpoint)
        report("federated", 4, total)
        from forgeflow.flows.search import search_in_optimize

        run.summary["search"] = search_in_optimize(cat.url, run.id, settings.s3_endpoint)
        report("search", 5, total)
        result = {"run_id": run.id, "catalog": cat.url, "model": model, "stages": stages, **run.summary}
    _publish(result, cat)
    return result


def _publish(result: dict[str, Any], cat=None) -> None:
    from forgeflow.flows.artifacts import publish

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


def validate_inputs(req: ModelJobRequest) -> None:
    """Check what can be checked before anything runs, so that bad input writes nothing: the stage count, that the
    model resolves, and that it runs on the input shape (one forward pass at batch size 1); once per process (no
    catalog needed: a bad input creates no catalog folder)."""
    validate_once("optimize", req.to_dict(), None, lambda: _validate_model_job(req))


def _validate_model_job(req: ModelJobRequest) -> None:
    import torch

    from forgeflow.tasks.errors import ForgeflowError
    from forgeflow.tasks.models.spec import default_input_shape, resolve_model

    req.validate()
    module = resolve_model(ModelSpec.parse(req.model)).eval()
    shape = tuple(req.input_shape) if req.input_shape else default_input_shape(req.model)
    try:
        with torch.no_grad():
            module(torch.zeros((1, *shape[1:])))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ForgeflowError(f"model {req.model} cannot run on an input of shape {list(shape)}: {first}") from None
