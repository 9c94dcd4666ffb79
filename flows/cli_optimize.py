"""`forgeflow optimize`, `forgeflow pipeline run` and `forgeflow report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import (CatalogOpt, DaskOpt, DataOpt, EndpointOpt, FlowCommand, JsonOpt, emit_json,
                                        err_console)
from forgeflow.tasks.errors import ForgeflowError


def register(app: typer.Typer) -> None:
    app.command(name="optimize")(optimize)
    pipeline = typer.Typer(name="pipeline", help="Run a deployable bundle.", no_args_is_help=True)
    pipeline.command(name="run")(pipeline_run)
    app.add_typer(pipeline)
    app.command(name="report")(report)


def optimize(
    supernet: Optional[str] = typer.Option(None, "--supernet", help="Elastic family: 'digits' (built-in, the default),"
                                           " 'train' (train the elastic family on --data), or a supernet id in the "
                                           "catalog"),
    model: Optional[str] = typer.Option(None, "--model", help="A fixed model spec (torchvision:NAME, "
                                        "package.module:factory, forgeflow:digits_cnn): runs the per-step model job "
                                        "(summary, bit plan, float partition over --stages, federated, search)"),
    stages: int = typer.Option(4, "--stages", help="With --model: pipelined accelerators (k)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="With --model: e.g. 1,3,224,224"),
    target: str = typer.Option("edge-npu-2x-48k", "--target", help="Hardware target file, or a shipped target's name "
                               "(deploy/targets/*.yaml)"),
    data: Optional[str] = DataOpt,
    clients: Optional[int] = typer.Option(None, "--clients", help="Federated QAT fine-tuning over N clients"),
    budget: int = typer.Option(48, "--budget", help="Subnets the search evaluates"),
    latency_limit_ms: Optional[float] = typer.Option(None, "--latency-limit-ms", help="Largest certified bottleneck "
                                                     "per microbatch on the target"),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Smallest held-out accuracy (%)"),
    latency_device: Optional[str] = typer.Option(None, "--latency-device", help="Every target device's latency from "
                                                 "this device model fitted by `forgeflow latency fit` (measurements "
                                                 "of the family's subnets), instead of the target's speed factors"),
    microbatch: int = typer.Option(32, "--microbatch", help="Examples per microbatch"),
    bundle_dir: Optional[str] = typer.Option(None, "--bundle-dir", help="Where the bundle goes [default "
                                             ".forgeflow/bundles/RUN_ID]"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """What to deploy on TARGET and how good it provably is: search, joint plan, accuracy check, bundle, report."""
    from forgeflow.flows.optimize import needs_cluster, optimize_family_flow, validate_family_inputs
    from forgeflow.tasks.deploy.request import DEFAULT_FAMILY, OptimizeRequest
    from forgeflow.tasks.deploy.target import load_target

    if model is not None and supernet is not None:
        raise ForgeflowError("give --model or --supernet, not both")
    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    if model is not None:
        return optimize_model(command, model, stages, input_shape)
    req = OptimizeRequest(supernet=supernet or DEFAULT_FAMILY, target=target, data=data, budget=budget,
                          latency_limit_ms=latency_limit_ms, min_accuracy_pct=min_accuracy, microbatch=microbatch,
                          bundle_dir=bundle_dir, clients=clients, latency_device=latency_device).validate()
    load_target(req.target, req.latency_device, latency_limit_ms=req.latency_limit_ms,
                min_accuracy_pct=req.min_accuracy_pct, microbatch=req.microbatch)  # a bad target fails before any process starts
    try:
        heavy = early = needs_cluster(req, command.catalog)
    except Exception:  # noqa: BLE001 - bad input: validate_family_inputs below says what is wrong
        heavy, early = None, False
    if early:  # the cluster and its workers' imports come up while the family checks import torch and build the supernet
        command.start_cluster_early(imports=("forgeflow.tasks.deploy.steps",))
    validate_family_inputs(req, command.catalog)
    if heavy is None:
        heavy = needs_cluster(req, command.catalog)
    result = command.run(optimize_family_flow, heavy=heavy, **req.to_dict())
    command.emit({k: v for k, v in result.items() if k not in ("units",)},
                 lambda: print("\n".join(summary_lines(result))))


def summary_lines(r: dict) -> list[str]:
    p, a, pipe, ch = r["plan"], r["accuracy"], r["pipeline"], r["chosen"]
    ratio = p.get("ratio")
    lines = [
        f"deploy    {ch['arch']} on {r['target']['name']} ({r['search']['why']})",
        f"plan      {p['k']} stage(s): " + " | ".join(
            ",".join(f"{u}:{p['bits'][u]}b" for u in st) for st in p["stages"]),
        f"certified bottleneck {p['bottleneck_ms']:.4g} ms per microbatch of {r['target']['microbatch']}, lower bound "
        f"{p['lower_bound_ms']:.4g} ms, ratio {'n/a' if ratio is None else format(ratio, '.4f')} ({p['status']})",
        f"accuracy  {a['accuracy_float_pct']:.2f} % float, {a['accuracy_quantized_pct']:.2f} % with the plan applied "
        f"({a['n_test']} held-out examples)",
    ]
    from forgeflow.tasks.deploy.device_latency import describe

    lines += [f"latency   {line}" for line in describe(r.get("latency_source"))]
    fed = r.get("federated")
    if fed:
        lines.append(f"finetune  federated QAT over {fed['clients']} clients, {fed['rounds']} rounds: "
                     f"{fed['accuracy_before_pct']:.2f} % -> {fed['accuracy_after_pct']:.2f} % "
                     f"({fed['uplink_bytes']:,} bytes up, {fed['downlink_bytes']:,} down); the bundle holds the "
                     f"fine-tuned weights")
    lines += [
        f"pipeline  {pipe['k']} processes: output {'equal to' if pipe['equal'] else 'DIFFERENT from'} the unsplit "
        f"quantized model; {pipe['throughput_mb_s']:.3g} microbatches/s measured vs "
        f"{pipe['predicted_throughput_mb_s']:.3g} predicted on this host",
        f"bundle    {r['bundle']['bundle']}   (forgeflow pipeline run {r['bundle']['bundle']})",
        f"report    forgeflow report {r['run_id']} -o report.html --catalog {r['catalog']}",
        "steps     " + ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items()),
    ]
    return lines


def pipeline_run(
    bundle: Path = typer.Argument(..., help="Bundle folder written by `forgeflow optimize`"),
    microbatches: int = typer.Option(64, "--microbatches", help="Microbatches to push through the pipeline"),
    json_out: bool = JsonOpt,
) -> None:
    """Run the bundle's k stages as k processes passing microbatches; check the output and measure the stages."""
    from forgeflow.tasks.deploy.pipeline_run import run_pipeline

    r = run_pipeline(bundle, microbatches=microbatches)
    if json_out:
        emit_json(r)
        return
    print(f"{r['k']} stages, {r['microbatches']} microbatches of {r['microbatch_size']}: pipelined output "
          f"{'== ' if r['equal'] else '!= '}unsplit quantized model (max |diff| {r['max_abs_diff']:.3g})")
    print(f"throughput {r['throughput_mb_s']:.3g} microbatches/s ({r['throughput_samples_s']:.4g} samples/s); "
          f"predicted on this host {r['predicted_throughput_mb_s']:.3g} ({r['throughput_gap_pct']:+.1f} %)")
    for i, (m, pr) in enumerate(zip(r["stage_ms_measured"], r["stage_ms_predicted_host"])):
        print(f"  stage {i}: measured {m:.3f} ms, predicted {pr:.3f} ms per microbatch")
    print(f"plan's certified bottleneck on its target: {r['bottleneck_ms_predicted_target']:.4g} ms")
    if not r["equal"]:
        raise typer.Exit(1)


def report(
    run_id: str = typer.Argument(..., help="An optimize run id"),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="Where to write the HTML page"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Write the run's self-contained HTML report."""
    import pyarrow.compute as pc

    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.flows.settings import load_settings

    cat = open_settings_catalog(load_settings(catalog=catalog, s3_endpoint=s3_endpoint))
    try:
        rows = cat.read("deploy_decisions", filter=pc.field("run_id") == run_id).to_pylist()
    except Exception:
        rows = []
    if not rows:
        raise ForgeflowError(f"run {run_id} is not an optimize run in catalog {cat.url}")
    data = cat.get_object(rows[-1]["report_key"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    if json_out:
        emit_json({"run_id": run_id, "output": str(output), "bytes": len(data)})
    else:
        err_console.print(f"wrote {output} ({len(data):,} bytes)")


def optimize_model(command: FlowCommand, model: str, stages: int, input_shape: Optional[str]) -> None:
    """`optimize --model SPEC`: the per-step job on a fixed model (flows.optimize.optimize_flow)."""
    from forgeflow.flows.optimize import optimize_flow, validate_inputs
    from forgeflow.tasks.deploy.request import ModelJobRequest
    from forgeflow.tasks.profiling.shape import parse_shape

    req = ModelJobRequest(model=model, stages=stages, input_shape=parse_shape(input_shape)).validate()
    command.start_cluster_early()  # comes up while the model is built and run once on its input shape
    validate_inputs(req)
    result = command.run(optimize_flow, **req.to_dict())
    command.emit(result, lambda: _model_report(result))


def _model_report(result: dict) -> None:
    err_console.print(f"[green]optimize completed[/green] run [bold]{result['run_id']}[/bold]")
    for line in step_lines(result):
        print(line)
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']})")
    print(f"  forgeflow catalog show {result['run_id']} --catalog {result['catalog']}")


def step_lines(result: dict) -> list[str]:
    """One human line per optimize step (the full figures are in the catalog and --json)."""
    ms = result["model_summary"]
    lines = [f"model     {result['model']}: {ms['params']:,} parameters, {ms['flops'] / 1e9:.3f} GFLOPs "
             f"(multiply-add = 2), {ms['modules']} modules"]
    for step in ("quantize", "partition", "federated", "search"):
        info = result.get(step)
        if not isinstance(info, dict):
            continue
        if "skipped" in info:
            lines.append(f"{step:<9} skipped: {info['skipped']}")
        elif step == "partition":
            lines.append(f"partition k={info.get('k')}: bottleneck {info.get('bottleneck', float('nan')):.4g} ms, "
                         f"proven lower bound {info.get('lower_bound', float('nan')):.4g} "
                         f"({info.get('lower_bound_method')}), ratio {info.get('ratio', float('nan')):.4f}, "
                         f"status {info.get('status')}")
        elif step == "search" and info.get("front"):
            best = max(info["front"], key=lambda c: c.get("accuracy_pct", 0))
            lines.append(f"search    {info.get('evaluations')} subnets evaluated, Pareto front of {len(info['front'])}; "
                         f"most accurate {best.get('accuracy_pct', 0):.1f} % at {best.get('latency_ms', 0):.2f} ms")
        else:
            keys = [k for k in ("accuracy", "size_bytes", "bits", "uplink_bytes", "rounds", "evaluations", "best")
                    if k in info and not isinstance(info[k], (list, dict))]
            lines.append(f"{step:<9} " + ", ".join(f"{k}={info[k]}" for k in keys) if keys else f"{step:<9} done")
    return lines


