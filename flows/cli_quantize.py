"""`forgeflow quantize`: mixed-precision bit plans under size / BOPs / latency budgets, checked for accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from forgeflow.flows.cli_common import (CatalogOpt, DaskOpt, DataOpt, DatasetAliasOpt, EndpointOpt, FlowCommand, JsonOpt,
                              data_source, err_console)
from forgeflow.tasks.quantize.errors import QuantizeError


def _pins(items: List[str]) -> tuple[tuple[str, int], ...]:
    out = []
    for item in items:
        name, sep, bits = item.rpartition("=")
        if not sep or not name:
            raise QuantizeError(f"--pin {item!r} must look like LAYER=BITS, e.g. conv1=8")
        try:
            out.append((name, int(bits)))
        except ValueError:
            raise QuantizeError(f"--pin {item!r}: {bits!r} is not an integer bit width") from None
    return tuple(out)


def _ties(items: List[str]) -> tuple[tuple[str, ...], ...]:
    out = []
    for item in items:
        names = tuple(x.strip() for x in item.split(",") if x.strip())
        if len(names) < 2:
            raise QuantizeError(f"--tie {item!r} must name at least two layers separated by commas")
        out.append(names)
    return tuple(out)


def quantize(
    model: Optional[str] = typer.Option(None, "--model", help="Model spec to train and quantize: forgeflow:digits_cnn, "
                                        "torchvision:NAME or package.module:factory"),
    run: Optional[str] = typer.Option(None, "--run", help="Reuse the trained model (and sensitivities) of a previous "
                                      "quantize run"),
    size_budget: Optional[float] = typer.Option(None, "--size-budget", help="Model size budget in bytes"),
    bops_budget: Optional[float] = typer.Option(None, "--bops-budget", help="Budget in bit-operations "
                                                "(MACs x weight bits x activation bits)"),
    latency_budget: Optional[float] = typer.Option(None, "--latency-budget", help="Latency budget in ms "
                                                   "(needs --latency-table)"),
    latency_table: Optional[Path] = typer.Option(None, "--latency-table", help="Per-layer, per-bit latencies: JSON "
                                                 "{layer: {bits: ms}} or CSV layer,bits,latency_ms"),
    bits: str = typer.Option("2,3,4,8", "--bits", help="Candidate weight widths (keeping float is always a candidate "
                             "unless --no-float)"),
    no_float: bool = typer.Option(False, "--no-float", help="Every layer must be quantized"),
    act_bits: int = typer.Option(8, "--act-bits", help="Activation width of quantized layers (0: float activations)"),
    tie: List[str] = typer.Option([], "--tie", help="Layers that must share a width, comma-separated (repeatable)"),
    pin: List[str] = typer.Option([], "--pin", help="LAYER=BITS fixes a layer's width (repeatable)"),
    pin_ends: Optional[int] = typer.Option(None, "--pin-ends", help="Pin the first and last layer to this width"),
    data: Optional[Path] = DataOpt,
    dataset: Optional[Path] = DatasetAliasOpt,
    epochs: int = typer.Option(30, "--epochs", help="Training epochs (0: use the weights as built)"),
    seed: int = typer.Option(0, "--seed"),
    pareto_points: int = typer.Option(8, "--pareto-points", help="Size budgets in the Pareto sweep"),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the plan (+ torchao per-module configs) as JSON"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Plan per-layer bit widths minimising the Hessian-weighted quantization error under the budgets given."""
    from forgeflow.flows.quantize import quantize_flow, validate_inputs
    from forgeflow.tasks.quantize.costs import parse_bits
    from forgeflow.tasks.quantize.pipeline import QuantizeRequest

    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    if latency_table is not None and not latency_table.exists():
        raise QuantizeError(f"latency table not found: {latency_table}")
    if export is not None and (export.is_dir() or not export.parent.is_dir()):
        raise QuantizeError(f"--export {export}: " + ("is a folder; give a file name" if export.is_dir() else
                                                       f"folder {export.parent} does not exist"))
    req = QuantizeRequest(
        model=model, source_run=run, dataset=data_source(data, dataset),
        bits=parse_bits(bits, keep_float=not no_float), act_bits=act_bits or None,
        size_budget=size_budget, bops_budget=bops_budget, latency_budget=latency_budget,
        latency_table=str(latency_table) if latency_table else None, ties=_ties(tie), pinned=_pins(pin),
        pin_ends=pin_ends, seed=seed, epochs=epochs, pareto_points=pareto_points)
    validate_inputs(req, command.catalog)
    result = command.run(quantize_flow, request=req.to_dict())
    if export is not None:
        from forgeflow.tasks.quantize.export import plan_json

        export.write_text(plan_json(dict(zip(result["layers"], result["bits"])), model=result["model"],
                                    act_bits=req.act_bits, allocation={
                                        k: result[k] for k in ("status", "objective", "dual_bound", "totals",
                                                               "budgets", "accuracy")} | {
                                        "torchao": result["torchao"],
                                        "torchao_unsupported": result["torchao_unsupported"],
                                        "run_id": result["run_id"]}))
    command.emit(result, lambda: _report(result))


def _report(result: dict) -> None:
    err_console.print(f"[green]quantize completed[/green] run [bold]{result['run_id']}[/bold]")
    t = result["totals"]
    print(f"model {result['model']}: plan {dict(zip(result['layers'], result['bits']))} ({result['status']}, "
          f"objective {result['objective']:.4g}, dual bound {result['dual_bound']:.4g})")
    print(f"size {t['size_bytes']:.0f} bytes, {t['bops']:.4g} BOPs"
          + (f", {t['latency_ms']:.4g} ms" if t.get("latency_ms") is not None else "")
          + f"; held-out accuracy {result['accuracy']:.4f} (float {result['float_accuracy']:.4f})")
    print(f"{'plan':<12} {'bits':<24} {'size (B)':>10} {'accuracy':>9}")
    for p in result["plans"]:
        print(f"{p['plan']:<12} {p['bits']:<24} {p['size_bytes']:>10.0f} {p['accuracy']:>9.4f}")
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']}); plot {result['plot']}")


def register(app: typer.Typer) -> None:
    app.command(name="quantize")(quantize)
