"""`forgeflow plan`: one deployment plan -- pipeline stages and bit widths together -- with a certified bound.

Light at import: ``forgeflow plan --graph INSTANCE.json`` never imports torch (only ``--model`` profiles a model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import (CatalogOpt, DaskOpt, DatasetAliasOpt, EndpointOpt, FlowCommand, JsonOpt,
                                        data_source, err_console)
from forgeflow.tasks.errors import ForgeflowError

PLAN_KEYS = ("instance", "k", "stages", "bits", "bottleneck", "lower_bound", "ratio", "status", "sensitivity",
             "budget", "stage_memory", "method", "lower_bound_method", "stage_loads", "baselines", "baseline_notes",
             "sensitivity_source", "target", "methods", "seconds")


def plan(
    graph: Optional[Path] = typer.Option(None, "--graph", help="Instance file: msr-fiddle JSON with bitOptions and "
                                         "sensitivityBudget (see README, 'forgeflow plan')"),
    model: Optional[str] = typer.Option(None, "--model", help="Model spec to profile: torchvision:NAME, "
                                        "package.module:factory or forgeflow:digits_cnn"),
    target: Optional[Path] = typer.Option(None, "--target", help="Hardware target file (deploy/targets/*.yaml) or a "
                                          "shipped target's name; with --graph it sets k and per-device memory"),
    budget: Optional[float] = typer.Option(None, "--budget", help="Sensitivity budget (overrides the instance's / "
                                           "target's)"),
    stages: Optional[int] = typer.Option(None, "--stages", help="With --model: number of devices k (default: the "
                                         "target's)"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Wall-time budget of the joint solve in seconds"),
    front: int = typer.Option(4, "--front", help="Budget points of the bottleneck-vs-sensitivity front (0: none)"),
    front_time_limit: float = typer.Option(10.0, "--front-time-limit", help="Seconds per front point"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the plan as PLAN.json here"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="With --model: e.g. 1,3,224,224"),
    data: Optional[str] = typer.Option(None, "--data", help="With --model: data for Hutchinson traces, .npz (arrays "
                                       "x, y) or .parquet (integer column y plus a list column x or one numeric "
                                       "column per feature) [default: bundled data if the model has some, else ZeroQ "
                                       "synthetic inputs]"),
    dataset: Optional[str] = DatasetAliasOpt,
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Place the model's layers on the target's pipelined devices and choose every layer's bit width together,
    minimising the bottleneck stage under per-device memory and a sensitivity budget; prove how far the plan can be
    from the best (certified ratio = bottleneck / proven lower bound) and report the baselines beside it."""
    from forgeflow.flows.plan import plan_deployment, validate_inputs
    from forgeflow.tasks.plan.request import PlanRequest

    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    shape = None
    if input_shape:  # the one --input-shape parser lives beside the profiler (torch): only for --model
        from forgeflow.tasks.profiling.shape import parse_shape

        shape = parse_shape(input_shape)
    if output is not None and not output.parent.resolve().is_dir():
        raise ForgeflowError(f"--output folder does not exist: {output.parent}")
    req = PlanRequest(graph_file=str(graph) if graph else None, model=model, target=str(target) if target else None,
                      budget=budget, time_limit=time_limit, stages=stages, front=front,
                      front_time_limit=front_time_limit, input_shape=shape,
                      dataset=data_source(data, dataset)).validate()
    validate_inputs(req)
    params = req.to_dict()
    result = command.run(plan_deployment, **params)
    out = {k: result.get(k) for k in PLAN_KEYS} | {k: result.get(k) for k in ("run_id", "result_id", "plot", "catalog",
                                                                           "front", "float_accuracy")}
    if output is not None:
        output.write_text(json.dumps(out, indent=1) + "\n")
    command.emit(out, lambda: _report(result, output))


def _report(result: dict, output: Optional[Path]) -> None:
    err_console.print(f"[green]plan completed[/green] run [bold]{result['run_id']}[/bold]")
    ratio = result["ratio"] if result["ratio"] is not None else float("inf")
    print(f"{result['instance']}, k={result['k']}: bottleneck {result['bottleneck']:.6g} ms ({result['method']}), "
          f"proven lower bound {result['lower_bound']:.6g} ms ({result['lower_bound_method']}), certified ratio "
          f"{ratio:.5f} [{result['status']}]")
    print(f"sensitivity {result['sensitivity']:.5g} of budget {result['budget']}; source: "
          f"{result.get('sensitivity_source') or 'given in the instance'}")
    print(f"{'stage':>5} {'nodes':>6} {'quantized':>9} {'compute ms':>11} {'recv ms':>9} {'send ms':>9} "
          f"{'total ms':>10} {'memory':>14}")
    for s, load in enumerate(result["stage_loads"]):
        q = sum(1 for i in result["stages"][s] if result["bits"][str(i)] < 32)
        print(f"{s:>5} {len(result['stages'][s]):>6} {q:>9} {load['compute_ms']:>11.4f} {load['comm_in_ms']:>9.4f} "
              f"{load['comm_out_ms']:>9.4f} {load['total_ms']:>10.4f} {load['memory']:>14.0f}")
    for name, value in result["baselines"].items():
        print(f"  baseline {name:<24} " + (f"{value:.6g} ms" if value is not None else
                                           f"no plan ({result['baseline_notes'].get(name, '')})"))
    for pt in result.get("front") or []:
        if pt["bottleneck_ms"] is None:
            print(f"  front budget {pt['budget']:.5g}: no plan ({pt['message']})")
            continue
        print(f"  front budget {pt['budget']:.5g}: bottleneck {pt['bottleneck_ms']:.6g} ms, bound "
              f"{pt['lower_bound_ms']:.6g} ms")
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']}); plot {result['plot']}"
          + (f"; plan written to {output}" if output else ""))


def register(app: typer.Typer) -> None:
    app.command(name="plan")(plan)
