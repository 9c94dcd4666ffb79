"""`forgeflow verify`: sound and complete robustness answers for the quantized network that actually runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import CatalogOpt, DaskOpt, EndpointOpt, FlowCommand, JsonOpt, err_console


def verify(
    eps: str = typer.Option(..., "--eps", help="L-infinity radii in steps of the quantized input, e.g. 1,2,4"),
    model: Optional[str] = typer.Option(None, "--model", help="Model spec to train and verify, e.g. "
                                        "forgeflow:digits_mlp_32_32"),
    run: Optional[str] = typer.Option(None, "--run", help="Verify the trained model (and plans) of a quantize run"),
    bits: Optional[str] = typer.Option(None, "--bits", help="Plan: a width for every layer (8), LAYER=BITS,..., "
                                       "'float', plan:ID of the --run, or a plan JSON from `quantize --export` "
                                       "(default: the run's requested plan, else 8)"),
    act_bits: int = typer.Option(8, "--act-bits", help="Activation width (the input lattice is its codes)"),
    samples: int = typer.Option(100, "--samples", help="First N held-out images every network classifies right"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds per instance"),
    no_float: bool = typer.Option(False, "--no-float", help="Skip the float reference network"),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs with --model"),
    seed: int = typer.Option(0, "--seed"),
    export: Optional[Path] = typer.Option(None, "--export", help="Write network.json, instances.json and a "
                                          "standalone recheck.py into this folder"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Verify L-infinity robustness of the quantized network (exact integer semantics) on held-out images."""
    from forgeflow.flows.verify import validate_inputs, verify_flow
    from forgeflow.tasks.verify.pipeline import VerifyRequest, export_run, parse_eps

    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    req = VerifyRequest(eps=parse_eps(eps), model=model, source_run=run, bits=bits, act_bits=act_bits,
                        samples=samples, time_limit=time_limit, float_reference=not no_float, seed=seed,
                        epochs=epochs).validate()
    validate_inputs(req, command.catalog)
    result = command.run(verify_flow, request=req.to_dict())
    files = export_run(command.catalog, result["run_id"], export) if export is not None else None
    main = result["summary"].get("quantized") or result["summary"]["float"]
    command.emit({**{k: v for k, v in result.items() if k != "summary"}, "networks": result["summary"],
                  "export": files, "verified": main["verified"], "falsified": main["falsified"],
                  "unknown": main["unknown"], "seconds": result["seconds"]}, lambda: _report(result, files))


def _report(result: dict, files: dict | None) -> None:
    err_console.print(f"[green]verify completed[/green] run [bold]{result['run_id']}[/bold]")
    print(f"model {result['model']}, plan {result['plan'] or 'float'}, {result['images']} images")
    print(f"{'network':<10} {'eps':>4} {'verified':>9} {'falsified':>10} {'unknown':>8} {'median s':>9} "
          f"{'max s':>7}  methods")
    for net, s in result["summary"].items():
        for e, c in s["per_eps"].items():
            med = f"{c['median_seconds']:.3f}" if c["median_seconds"] is not None else "-"
            print(f"{net:<10} {e:>4} {c['verified']:>9} {c['falsified']:>10} {c['unknown']:>8} {med:>9} "
                  f"{c['max_seconds']:>7.2f}  " + ", ".join(f"{m} {n}" for m, n in c["methods"].items()))
    if files:
        print(f"export: {', '.join(files.values())}")
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']}, tables verify_results, "
          f"verify_networks); plot {result['plot']}; {result['seconds']:.1f} s")


def register(app: typer.Typer) -> None:
    app.command(name="verify")(verify)
