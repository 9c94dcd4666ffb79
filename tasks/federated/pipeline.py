"""A federated run end to end against the catalog: data, rounds (checkpointed), final weights, plots, summary row.

``federate_and_store`` is what the Prefect step runs; it is a plain function of (catalog, run id, configuration,
data source, executor), so tests and benchmarks call it without Prefect.
"""

from __future__ import annotations

import json
from typing import Any

from forgeflow.tasks.dask_fanout import SERIAL
from forgeflow.tasks.federated.checkpoints import CatalogCheckpoints
from forgeflow.tasks.federated.client import check_model_for_dp
from forgeflow.tasks.federated.config import FederatedConfig, FederatedConfigError
from forgeflow.tasks.federated.data import FederatedDataset, build_dataset
from forgeflow.tasks.federated.plot import accuracy_plot
from forgeflow.tasks.federated.runner import FederatedResult, resolve_noise, run_federated


def prepare(config: FederatedConfig, data: str | None) -> FederatedDataset:
    """Validate everything that can be checked before a run writes anything; return the split data set."""
    config.validate()
    from forgeflow.tasks.models.spec import resolve_model

    resolve_model(config.model)  # UnknownModelError names a bad spec
    check_model_for_dp(config.model, config.privacy.mode)
    dataset = build_dataset(data, config.clients, config.alpha, config.seed, config.min_client_samples)
    _check_model_runs(config.model, dataset)
    resolve_noise(config, dataset.client_sizes)  # an unreachable --dp-epsilon fails here
    return dataset


def _check_model_runs(spec: str, dataset: FederatedDataset) -> None:
    import torch

    from forgeflow.tasks.federated.model_state import build_model

    model = build_model(spec).eval()
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(dataset.x_train[:2]))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FederatedConfigError(f"model {spec} cannot run on the data (inputs of shape "
                                   f"{list(dataset.x_train.shape[1:])}): {first}") from None
    if out.ndim != 2 or out.shape[1] < dataset.num_classes:
        raise FederatedConfigError(f"model {spec} outputs shape {list(out.shape)}; it needs (batch, >= "
                                   f"{dataset.num_classes}) class scores for this data set")


def federate_and_store(cat, run_id: str, config: FederatedConfig, data: str | None = None, executor: Any = SERIAL,
                       on_round=None) -> dict[str, Any]:
    """Run (or resume) the federated training; write rounds, checkpoints, final weights, plots and a runs row."""
    dataset = prepare(config, data)
    store = CatalogCheckpoints(cat, run_id, dp=config.privacy.mode, compression=config.compression.label(),
                               delta=config.privacy.delta if config.privacy.mode != "none" else None)
    result = run_federated(config, dataset, executor=executor, store=store, on_round=on_round)
    return store_result(cat, run_id, result, dataset)


def store_result(cat, run_id: str, result: FederatedResult, dataset: FederatedDataset) -> dict[str, Any]:
    cfg = result.config
    weights_key = cat.put_arrays({"weights": result.weights}, run_id=run_id,
                                 description=f"final federated weights of {cfg.model} (flat float32 state vector)")
    label = f"{cfg.compression.label()}" + (f", DP {cfg.privacy.mode}" if cfg.privacy.mode != "none" else "")
    png = accuracy_plot({label: result.records},
                        title=f"{cfg.model}: {cfg.clients} clients, alpha={cfg.alpha}, fraction={cfg.fraction}")
    plot_key = cat.put_object(png, ".png", run_id=run_id, description="accuracy vs rounds and vs uplink bytes",
                              kind="plot")
    s = result.summary()
    cat.append("federated_runs", [{
        "run_key": result.run_key, "model": cfg.model, "dataset": dataset.dataset_id,
        "config": json.dumps(cfg.to_dict(), sort_keys=True), "rounds": s["rounds"], "accuracy": s["accuracy"],
        "uplink_bytes": s["uplink_bytes"], "downlink_bytes": s["downlink_bytes"], "epsilon": s["epsilon"],
        "delta": s["delta"], "noise_multiplier": s["noise_multiplier"], "privacy_assumption": s["privacy_assumption"],
        "weights_key": weights_key, "plot_keys": [plot_key], "resumed_from_round": s["resumed_from_round"],
    }], run_id=run_id, description="federated run summary")
    return {**s, "model": cfg.model, "dataset": dataset.dataset_id, "clients": cfg.clients,
            "weights_key": weights_key, "plot": plot_key,
            "table": [{"round": r.round, "status": r.status, "accuracy": r.accuracy, "loss": r.loss,
                       "participants": len(r.participants), "dropped": len(r.dropped),
                       "uplink_bytes": r.uplink_bytes, "downlink_bytes": r.downlink_bytes, "epsilon": r.epsilon,
                       "seconds": r.seconds} for r in result.records]}
