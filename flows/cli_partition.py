"""`forgeflow partition`: a pipeline plan over k accelerators with a certified bound on its throughput."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import CatalogOpt, DaskOpt, EndpointOpt, FlowCommand, JsonOpt, err_console
from forgeflow.tasks.errors import ForgeflowError

PLAN_KEYS = ("graph", "graph_id", "k", "memory_cap", "stages", "bottleneck", "lower_bound", "ratio", "status",
             "method", "lower_bound_method", "stage_loads", "methods", "seconds")


def partition(
    graph: Optional[Path] = typer.Option(None, "--graph", help="Graph file: msr-fiddle JSON, PipeDream graph.txt or "
                                         "forgeflow JSON"),
    model: Optional[str] = typer.Option(None, "--model", help="Model spec to profile first: torchvision:NAME, "
                                        "package.module:factory or forgeflow:digits_cnn"),
    graph_id: Optional[str] = typer.Option(None, "--graph-id", help="A graph already in the catalog"),
    stages: int = typer.Option(..., "--stages", help="Number of pipelined accelerators k (at most k stages)"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Wall-time budget of the solve in seconds"),
    memory_cap: Optional[float] = typer.Option(None, "--memory-cap", help="Per-stage memory cap in bytes "
                                               "(default: the graph's own, if any)"),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the plan as PLAN.json here"),
    seed: int = typer.Option(0, "--seed", help="Seed of the randomized search"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="With --model: e.g. 1,3,224,224"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Split the graph into at most STAGES pipeline stages minimising the bottleneck stage (max throughput), and
    prove how far the plan can be from the best possible (certified ratio = bottleneck / proven lower bound)."""
    from forgeflow.flows.partition import partition_graph, validate_inputs
    from forgeflow.tasks.partition.request import PartitionRequest
    from forgeflow.tasks.profiling.shape import parse_shape

    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    shape = parse_shape(input_shape)
    if graph is not None and not graph.exists():
        raise ForgeflowError(f"graph file not found: {graph}")
    if output is not None and not output.parent.resolve().is_dir():
        raise ForgeflowError(f"--output folder does not exist: {output.parent}")
    validate_inputs(PartitionRequest(stages=stages, graph_file=str(graph) if graph else None, model=model,
                                     graph_id=graph_id, time_limit=time_limit, memory_cap=memory_cap, seed=seed,
                                     input_shape=shape), command.catalog)
    result = command.run(partition_graph, heavy=model is not None, stages=stages,
                         graph_file=str(graph) if graph else None, model=model, graph_id=graph_id,
                         time_limit=time_limit, memory_cap=memory_cap, seed=seed,
                         input_shape=list(shape) if shape else None)
    plan = {k: result[k] for k in PLAN_KEYS} | {k: result[k] for k in ("run_id", "result_id", "plot", "catalog")}
    if output is not None:
        output.write_text(json.dumps(plan, indent=1) + "\n")
    command.emit(plan, lambda: _report(result, output))


def _report(result: dict, output: Optional[Path]) -> None:
    err_console.print(f"[green]partition completed[/green] run [bold]{result['run_id']}[/bold]")
    print(f"graph {result['graph']} ({result['graph_id']}), k={result['k']}: bottleneck {result['bottleneck']:.6g} ms "
          f"({result['method']}), proven lower bound {result['lower_bound']:.6g} ms ({result['lower_bound_method']}), "
          f"certified ratio {result['ratio']:.5f} [{result['status']}]")
    print(f"{'stage':>5} {'nodes':>6} {'compute ms':>11} {'recv ms':>9} {'send ms':>9} {'total ms':>10} {'memory':>14}")
    for s, load in enumerate(result["stage_loads"]):
        print(f"{s:>5} {len(result['stages'][s]):>6} {load['compute_ms']:>11.4f} {load['comm_in_ms']:>9.4f} "
              f"{load['comm_out_ms']:>9.4f} {load['total_ms']:>10.4f} {load['memory']:>14.0f}")
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']}); plot {result['plot']}"
          + (f"; plan written to {output}" if output else ""))


def register(app: typer.Typer) -> None:
    app.command(name="partition")(partition)
