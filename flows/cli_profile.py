"""`forgeflow profile` (per-operator cost graphs of models) and `forgeflow graph import | export | ls | show`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import (CatalogOpt, DaskOpt, EndpointOpt, FlowCommand, JsonOpt, emit_json, err_console,
                              progress_bar, quiet_prefect_for_json)
from forgeflow.tasks.errors import ForgeflowError

graph_app = typer.Typer(help="Import, export and list cost graphs (msr-fiddle JSON, PipeDream graph.txt).",
                        no_args_is_help=True)


def _settings(catalog, s3_endpoint, dask_address=None):
    from forgeflow.flows.settings import load_settings

    return load_settings(catalog=catalog, s3_endpoint=s3_endpoint, dask_address=dask_address)


def profile(
    model: list[str] = typer.Option(..., "--model", help="Model spec (repeat for several, profiled in parallel): "
                                    "torchvision:NAME, package.module:factory or forgeflow:NAME"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="Input shape with batch, e.g. 1,3,224,224 "
                                              "(default per model)"),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size (replaces the shape's first dimension)"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16 | float64"),
    granularity: str = typer.Option("op", "--granularity", help="op (one node per operator) | layer (grouped by "
                                    "module path)"),
    layer_depth: int = typer.Option(2, "--layer-depth", help="Module-path depth of a layer (granularity layer)"),
    repeats: int = typer.Option(5, "--repeats", help="Timed repeats per measurement (median and IQR)"),
    warmup: int = typer.Option(2, "--warmup", help="Untimed warm-up passes"),
    link: str = typer.Option("pcie4_x16", "--link", help="Link profile pricing edges: pcie3_x16, pcie4_x16, "
                             "pcie5_x16, nvlink, nvlink3, infiniband_hdr, 100gbe, 25gbe, 10gbe, 1gbe, msr_fpga, "
                             "or custom:GBPS:MICROSECONDS"),
    capture: str = typer.Option("auto", "--capture", help="auto (fx, then export) | fx | export"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per model (each model runs alone "
                                          "on its Dask worker) [default FORGEFLOW_DASK_THREADS]"),
    export_msr: Optional[Path] = typer.Option(None, "--export-msr", help="Also write the graph as msr-fiddle JSON "
                                              "(one model only)"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Profile MODEL into a per-operator cost graph (FLOPs, bytes, measured latency, transfer costs) in the catalog."""
    from forgeflow.flows.profile_models import make_config, profile_models, validate_profile_inputs
    from forgeflow.tasks.profiling.shape import parse_shape

    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    if threads is not None and threads < 1:
        raise ForgeflowError(f"--threads must be >= 1, got {threads}")
    if export_msr is not None and len(model) != 1:
        raise ForgeflowError("--export-msr takes one --model")
    shape = parse_shape(input_shape)
    config = make_config(shape, dtype, batch, granularity, layer_depth, repeats, warmup, link, capture)
    validate_profile_inputs(model, config)
    result = command.run(profile_models, models=list(model), input_shape=list(shape) if shape else None, dtype=dtype,
                         batch=batch, granularity=granularity, layer_depth=layer_depth, repeats=repeats,
                         warmup=warmup, link=link, capture=capture,
                         threads_per_worker=threads or command.settings.dask_threads)
    cat = command.catalog
    if export_msr is not None:
        from forgeflow.tasks.profiling.graph_store import read_graph
        from forgeflow.tasks.profiling.msr_io import dump_msr_json

        dump_msr_json(read_graph(cat, result["graphs"][0]["graph_id"]), export_msr)
    if len(result["graphs"]) == 1:
        out = {**result["graphs"][0], "run_id": result["run_id"], "catalog": result["catalog"]}
    else:
        out = {**result, "graph_ids": [g["graph_id"] for g in result["graphs"]]}
    if export_msr is not None:
        out["msr_file"] = str(export_msr)
    command.emit(out, lambda: _report(result, export_msr))


def _report(result: dict, export_msr: Optional[Path]) -> None:
    err_console.print(f"[green]profile completed[/green] run [bold]{result['run_id']}[/bold]")
    for g in result["graphs"]:
        _print_summary(g)
    if export_msr is not None:
        print(f"msr-fiddle JSON: {export_msr}")
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']})")


def _print_summary(g: dict) -> None:
    ratio = g.get("node_sum_ratio")
    notes = "; ".join(g.get("capture_notes") or [])
    print(f"{g['model'] or g['name']}: graph {g['graph_id']} ({g['granularity']}, {g['nodes']} nodes, {g['edges']} "
          f"edges, captured with {g['capture']}{' after: ' + notes if notes else ''})")
    print(f"  FLOPs {g['flops']:,} ({g['flops'] / 1e9:.3f} GFLOPs, multiply-add = 2), params {g['params']:,}")
    if g.get("whole_model_ms") is not None:
        ctx = g.get("context") or {}
        print(f"  latency: model {g['whole_model_ms']:.3f} ms (IQR {g['whole_model_spread_ms']:.3f}), node sum "
              f"{g['latency_sum_ms']:.3f} ms (node sum / model {ratio:.3f}) over {g['repeats']} repeats on "
              f"{ctx.get('cpu_model')}, {ctx.get('torch_threads')} thread(s), torch {ctx.get('torch_version')}")


@graph_app.command("import")
def graph_import(
    files: list[Path] = typer.Argument(..., help="Graph files: msr-fiddle JSON, PipeDream graph.txt, forgeflow JSON"),
    fmt: str = typer.Option("auto", "--format", help="auto | msr | pipedream | forgeflow"),
    link: Optional[str] = typer.Option(None, "--link", help="Link profile pricing PipeDream transfers "
                                       "[default pcie4_x16]"),
    training: bool = typer.Option(False, "--training", help="PipeDream: latency = forward + backward, transfers "
                                  "counted both ways"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Import graph files into the catalog (tables graphs, graph_nodes, graph_edges)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.profile_models import import_graphs
    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.tasks.profiling.graph_files import load_graph_file
    from forgeflow.tasks.profiling.links import get_link

    quiet_prefect_for_json(json_out)
    if link is not None:
        get_link(link)
    for f in files:  # fail before the run on any bad file
        load_graph_file(f, fmt, link=link, training=training)
    cat = open_settings_catalog(_settings(catalog, s3_endpoint))
    # parsing a file is light work: threads in this process, not a Dask cluster
    flow = import_graphs.with_options(task_runner=ThreadPoolTaskRunner(max_workers=4))
    with progress_bar(not json_out):
        result = flow(paths=[str(f) for f in files], catalog=cat.url, s3_endpoint=_settings(catalog, s3_endpoint)
                      .s3_endpoint, fmt=fmt, link=link, training=training)
    if json_out:
        if len(result["graphs"]) == 1:
            emit_json({**result["graphs"][0], "run_id": result["run_id"], "catalog": result["catalog"]})
        else:
            emit_json({**result, "graph_ids": [g["graph_id"] for g in result["graphs"]]})
        return
    for g in result["graphs"]:
        print(f"{g['name']}: graph {g['graph_id']} ({g['nodes']} nodes, {g['edges']} edges, source {g['source']})")
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']})")


@graph_app.command("export")
def graph_export(
    graph_id: str = typer.Argument(..., help="graph_id in the catalog"),
    out: Path = typer.Argument(..., help="Output file"),
    fmt: str = typer.Option("msr", "--format", help="msr | pipedream | forgeflow"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Write a catalog graph to a file (msr-fiddle JSON by default)."""
    import json

    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.tasks.profiling.graph_store import read_graph
    from forgeflow.tasks.profiling.msr_io import dump_msr_json
    from forgeflow.tasks.profiling.pipedream_io import format_pipedream_graph

    if fmt not in ("msr", "pipedream", "forgeflow"):
        raise ForgeflowError(f"--format must be msr, pipedream or forgeflow; got {fmt!r}")
    g = read_graph(open_settings_catalog(_settings(catalog, s3_endpoint)), graph_id)
    if fmt == "msr":
        dump_msr_json(g, out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(format_pipedream_graph(g) if fmt == "pipedream" else json.dumps(g.to_dict(), indent=1))
    if json_out:
        emit_json({"graph_id": g.graph_id, "file": str(out), "format": fmt, "nodes": len(g.nodes),
                   "edges": len(g.edges)})
    else:
        print(f"graph {g.graph_id} -> {out} ({fmt})")


@graph_app.command("ls")
def graph_ls(catalog: Optional[str] = CatalogOpt, s3_endpoint: Optional[str] = EndpointOpt,
             json_out: bool = JsonOpt) -> None:
    """List the graphs in the catalog, newest first."""
    from forgeflow.flows.runtime import open_settings_catalog
    from forgeflow.tasks.profiling.graph_store import list_graphs

    rows = list_graphs(open_settings_catalog(_settings(catalog, s3_endpoint))).to_pylist()
    if json_out:
        emit_json({"graphs": rows})
        return
    for r in rows:
        print(f"{r['graph_id']}  {r['name']:<24} {r['source'] or '':<9} {r['granularity'] or '':<5} "
              f"{r['nodes']:>6} nodes {r['edges']:>6} edges  {(r['flops'] or 0) / 1e9:10.3f} GFLOPs  run {r['run_id']}")


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
    app.add_typer(graph_app, name="graph")
