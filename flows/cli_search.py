"""`forgeflow search`: the most accurate subnet under a latency limit from a once-trained elastic supernet."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import (CatalogOpt, DaskOpt, DataOpt, DatasetAliasOpt, EndpointOpt, FlowCommand, JsonOpt,
                              data_source, err_console)


def search(
    latency_limit_ms: Optional[float] = typer.Option(None, "--latency-limit-ms", help="Latency limit (ms, CPU, batch "
                                                     "of --latency-batch); the best subnet under it is reported"),
    budget: int = typer.Option(200, "--budget", help="Distinct subnets the search evaluates"),
    seed: int = typer.Option(0, "--seed"),
    data: Optional[Path] = DataOpt,
    dataset: Optional[Path] = DatasetAliasOpt,
    epochs: int = typer.Option(15, "--epochs", help="Supernet training epochs (sandwich rule)"),
    source: str = typer.Option("supernet", "--source", help="'supernet': accuracy measured on extracted subnets; "
                               "'predictors': the fitted accuracy predictor"),
    supernet_run: Optional[str] = typer.Option(None, "--supernet-run", help="Reuse the supernet trained by this run"),
    scratch_compare: int = typer.Option(0, "--scratch-compare", help="Front subnets to also train from scratch"),
    latency_batch: int = typer.Option(32, "--latency-batch", help="Batch size of latency measurements"),
    latency_device: Optional[str] = typer.Option(None, "--latency-device", help="Search with the latency predicted "
                                                 "for a device fitted by `forgeflow latency fit` (same space) "
                                                 "instead of this machine's measured latency"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train an elastic supernet once, fit predictors, and search the accuracy/latency Pareto front."""
    from forgeflow.flows.search import search_flow, validate_inputs
    from forgeflow.tasks.supernet.pipeline import SearchRequest

    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    req = SearchRequest(dataset=data_source(data, dataset), epochs=epochs, seed=seed, budget=budget,
                        latency_limit_ms=latency_limit_ms, source=source, supernet_run=supernet_run,
                        scratch_compare=scratch_compare, latency_batch=latency_batch,
                        latency_device=latency_device)
    req.validate()
    validate_inputs(req, command.catalog)
    result = command.run(search_flow, request=req.to_dict())
    command.emit(result, lambda: _report(result, latency_limit_ms))


def _report(result: dict, latency_limit_ms: Optional[float]) -> None:
    err_console.print(f"[green]search completed[/green] run [bold]{result['run_id']}[/bold]")
    p = result["predictors"]
    print(f"predictors (held-out): accuracy Spearman {p['accuracy_spearman']:.3f}, latency Spearman "
          f"{p['latency_spearman']:.3f} (RMSE {p['latency_rmse']:.3f} ms)")
    src = result.get("latency_source") or {}
    if src.get("device", "local-cpu") != "local-cpu":
        print(f"latency: predicted for device {src['device']} (fitted from {src['n_measurements']} measurements, "
              f"leave-one-out log error {src['loo_log_rmse']:.3f})")
    print(f"{result['evaluations']} subnets evaluated ({result['status']}); Pareto front:")
    print(f"{'latency (ms)':>12} {'accuracy (%)':>12}  arch")
    for f in result["front"]:
        print(f"{f['latency_ms']:>12.3f} {f['accuracy_pct']:>12.2f}  {f['arch']}")
    if latency_limit_ms is not None:
        b = result["best"]
        print(f"best under {latency_limit_ms:g} ms: " + (f"{b['arch']} ({b['accuracy_pct']:.2f} %, "
                                                          f"{b['latency_ms']:.3f} ms)" if b else "none fits"))
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']}); plot {result['plot']}")


def register(app: typer.Typer) -> None:
    app.command(name="search")(search)
