"""`forgeflow federate`: federated training over simulated clients on Dask, with compression and DP accounting."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import (CatalogOpt, DaskOpt, DataOpt, DatasetAliasOpt, EndpointOpt, FlowCommand, JsonOpt,
                              data_source, err_console)
from forgeflow.tasks.federated.config import Compression, FederatedConfig, FederatedConfigError, Privacy

DEFAULT_MODEL = "forgeflow.tasks.federated.models:digits_cnn_gn"


def build_config(model: str, clients: int, alpha: Optional[float], iid: bool, rounds: int, fraction: float,
                 local_epochs: int, batch_size: int, lr: float, server_lr: float, prox_mu: float, compress: str,
                 dp: Optional[str], dp_clip: float, dp_noise: Optional[float], dp_epsilon: Optional[float],
                 delta: float, quorum: float, deadline: Optional[float], seed: int) -> FederatedConfig:
    if dp is None and (dp_noise is not None or dp_epsilon is not None):
        raise FederatedConfigError("--dp-noise / --dp-epsilon need --dp record or --dp client")
    if dp not in (None, "record", "client"):
        raise FederatedConfigError(f"--dp must be 'record' or 'client', got {dp!r}")
    if iid and alpha is not None:
        raise FederatedConfigError("give either --alpha (Dirichlet label split) or --iid, not both")
    privacy = Privacy(mode=dp or "none", clip=dp_clip, noise=dp_noise, target_epsilon=dp_epsilon, delta=delta)
    return FederatedConfig(
        model=model, clients=clients, alpha=None if iid else (0.3 if alpha is None else alpha), rounds=rounds,
        fraction=fraction, local_epochs=local_epochs, batch_size=batch_size, lr=lr, server_lr=server_lr,
        prox_mu=prox_mu, compression=Compression.parse(compress), privacy=privacy, quorum=quorum,
        deadline_s=deadline, seed=seed).validate()


def federate(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="Model spec (a classifier for the data): "
                              "forgeflow:digits_mlp, package.module:factory, ..."),
    data: Optional[Path] = DataOpt,
    dataset: Optional[Path] = DatasetAliasOpt,
    clients: int = typer.Option(20, "--clients", help="Number of clients the data is split over"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Dirichlet(alpha) label split (default 0.3)"),
    iid: bool = typer.Option(False, "--iid", help="Split the data IID instead"),
    rounds: int = typer.Option(30, "--rounds", help="Communication rounds"),
    fraction: float = typer.Option(0.5, "--fraction", help="Share of clients sampled per round"),
    local_epochs: int = typer.Option(2, "--local-epochs", help="Local epochs per round"),
    batch_size: int = typer.Option(16, "--batch-size", help="Local batch size (expected size under DP-SGD; with --dp record, a size >= every client's data runs full-batch DP-GD: one noisy step per local epoch)"),
    lr: float = typer.Option(0.1, "--lr", help="Client SGD learning rate"),
    server_lr: float = typer.Option(1.0, "--server-lr", help="Server learning rate on the averaged update"),
    prox_mu: float = typer.Option(0.0, "--prox-mu", help="FedProx proximal weight mu (0: FedAvg)"),
    compress: str = typer.Option("none", "--compress", help="none | int8 | topk:RATIO | randk:RATIO (error feedback)"),
    dp: Optional[str] = typer.Option(None, "--dp", help="Differential privacy: record (DP-SGD in every client) or "
                                     "client (DP-FedAvg)"),
    dp_clip: float = typer.Option(1.0, "--dp-clip", help="L2 clip: per example (record) or per client update (client)"),
    dp_noise: Optional[float] = typer.Option(None, "--dp-noise", help="Noise multiplier z (std = z x clip)"),
    dp_epsilon: Optional[float] = typer.Option(None, "--dp-epsilon", help="Target epsilon after the last round "
                                               "(calibrates the noise multiplier)"),
    delta: float = typer.Option(1e-5, "--delta", help="DP delta"),
    quorum: float = typer.Option(0.5, "--quorum", help="Share of sampled clients a round needs"),
    deadline: Optional[float] = typer.Option(None, "--deadline", help="Round deadline in seconds (stragglers are "
                                             "dropped)"),
    seed: int = typer.Option(0, "--seed"),
    catalog: Optional[str] = CatalogOpt,
    s3_endpoint: Optional[str] = EndpointOpt,
    dask_address: Optional[str] = DaskOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train MODEL over clients that keep their data; report accuracy, bytes sent and privacy spent per round."""
    from forgeflow.flows.federated import federated_training, validate_inputs

    command = FlowCommand(json_out, catalog, s3_endpoint, dask_address)
    cfg = build_config(model, clients, alpha, iid, rounds, fraction, local_epochs, batch_size, lr, server_lr,
                       prox_mu, compress, dp, dp_clip, dp_noise, dp_epsilon, delta, quorum, deadline, seed)
    data_arg = data_source(data, dataset)
    validate_inputs(cfg, data_arg)  # every input check before anything is written
    result = command.run(federated_training, config=cfg.to_dict(), data=data_arg)
    command.emit({k: v for k, v in result.items() if k != "table"}, lambda: _report(result))


def _report(result: dict) -> None:
    err_console.print(f"[green]federate completed[/green] run [bold]{result['run_id']}[/bold]")
    print(f"{'round':>5} {'status':<9} {'accuracy':>8} {'loss':>7} {'part.':>5} {'drop':>4} {'uplink B':>10} "
          f"{'downlink B':>11} {'epsilon':>8} {'s':>6}")
    for r in result["table"]:
        eps = f"{r['epsilon']:.3f}" if r["epsilon"] is not None else "-"
        print(f"{r['round']:>5} {r['status']:<9} {r['accuracy']:>8.4f} {r['loss']:>7.4f} {r['participants']:>5} "
              f"{r['dropped']:>4} {r['uplink_bytes']:>10,} {r['downlink_bytes']:>11,} {eps:>8} {r['seconds']:>6.2f}")
    print(f"final accuracy {result['accuracy']:.4f}; uplink {result['uplink_bytes']:,} B, downlink "
          f"{result['downlink_bytes']:,} B" + (f"; epsilon {result['epsilon']:.3f} at delta {result['delta']:g} "
                                               f"({result['privacy_assumption']})" if result['epsilon'] is not None
                                               else ""))
    print(f"results: catalog {result['catalog']} (run_id {result['run_id']}); weights {result['weights_key']}; "
          f"plot {result['plot']}")


def register(app: typer.Typer) -> None:
    app.command(name="federate")(federate)
