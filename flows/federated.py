"""`forgeflow federate`: federated training on Dask (FedAvg / FedProx, compression, DP), recorded in the catalog.

One coarse step (``federated-training``) runs the round loop on a Dask worker and fans every sampled client's local
training out over the same cluster. Each completed round is checkpointed in the catalog; running the flow again with
the same configuration and data resumes after the last completed round.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from forgeflow.flows.progress import report
from forgeflow.flows.runtime import open_flow_catalog, recorded_run, step_cache
from forgeflow.flows.validation import validate_once
from forgeflow.tasks.federated.config import FederatedConfig
from forgeflow.tasks.federated.steps import federated_training_step

# `forgeflow optimize` runs a short federated training of the selected model when it takes digits-shaped input
OPTIMIZE_DEFAULTS = dict(clients=10, rounds=5, fraction=0.5, local_epochs=1, alpha=0.5)


def run_federated_step(cat_url: str, run_id: str, config: FederatedConfig, data: str | None,
                       s3_endpoint: str | None) -> dict[str, Any]:
    report("federated", 0, 1)
    out = federated_training_step.submit(cat_url, run_id, config.to_dict(), data, s3_endpoint,
                                         step_cache=step_cache()).result()
    report("federated", 1, 1)
    return out


def validate_inputs(config: FederatedConfig, data: str | None) -> None:
    """The configuration against the data and the model (nothing is written on bad input); once per process."""
    from forgeflow.tasks.federated.pipeline import prepare

    validate_once("federated_training", {"config": config.to_dict(), "data": data}, None,
                  lambda: prepare(config, data))


@flow(name="federated_training", log_prints=False)
def federated_training(config: dict[str, Any], data: str | None = None, catalog: str | None = None,
                       s3_endpoint: str | None = None) -> dict[str, Any]:
    """Federated training with ``config`` (``FederatedConfig.to_dict()``) on ``data`` (None: digits)."""
    cfg = FederatedConfig.from_dict(config)
    from forgeflow.flows.model_policy import enforce_model_policy

    enforce_model_policy([cfg.model])
    settings, cat = open_flow_catalog(catalog, s3_endpoint)
    validate_inputs(cfg, data)  # before the run row: a served or deployed run with bad input writes nothing
    with recorded_run(cat, "federated_training", {"config": cfg.to_dict(), "data": data}) as run:
        out = run_federated_step(cat.url, run.id, cfg, data, settings.s3_endpoint)
        run.summary.update({k: out[k] for k in ("rounds", "accuracy", "uplink_bytes", "downlink_bytes", "epsilon",
                                                 "run_key", "weights_key")})
        result = {"run_id": run.id, "catalog": cat.url, **out}
    publish_federated(result, cat)
    return result


def publish_federated(result: dict[str, Any], cat=None) -> None:
    from forgeflow.flows.artifacts import publish

    eps = result["epsilon"]
    privacy = (f"- DP ({result['dp']}): epsilon {eps:.3f} at delta {result['delta']:g}, noise multiplier "
               f"{result['noise_multiplier']:.4g}; assumption: {result['privacy_assumption']}\n") if eps is not None \
        else "- no differential privacy\n"
    md = (f"Run `{result['run_id']}` in catalog `{result['catalog']}` (resume key `{result['run_key']}`, resumed "
          f"after round {result['resumed_from_round']}).\n\n"
          f"- model `{result['model']}` on `{result['dataset']}`, {result['clients']} clients, "
          f"compression {result['compression']}\n"
          f"- final test accuracy {result['accuracy']:.4f} after {result['rounds']} rounds "
          f"(best {result['best_accuracy']:.4f})\n"
          f"- uplink {result['uplink_bytes']:,} bytes, downlink {result['downlink_bytes']:,} bytes; "
          f"{result['dropped']} client drops\n" + privacy +
          f"- final weights: `{result['weights_key']}`\n")
    publish("federated", f"forgeflow federate {result['model']}", md, table=result["table"],
            plots=[("accuracy vs rounds and vs uplink bytes (PNG)", result["plot"])], catalog=cat)


def federated_in_optimize(cat_url: str, run_id: str, model: str, s3_endpoint: str | None) -> dict[str, Any]:
    """The federated step of `forgeflow optimize`: a short FedAvg run of ``model`` over 10 digits clients
    (``OPTIMIZE_DEFAULTS``), or ``{"skipped": reason}`` when the model does not take digits-shaped input."""
    from forgeflow.tasks.errors import ForgeflowError
    from forgeflow.tasks.federated.pipeline import prepare

    cfg = FederatedConfig(model=model, **OPTIMIZE_DEFAULTS)
    try:
        prepare(cfg, None)
    except ForgeflowError as exc:
        return {"skipped": f"{exc}; run `forgeflow federate --model {model} --data DATA.npz` with its own data"}
    out = run_federated_step(cat_url, run_id, cfg, None, s3_endpoint)
    return {k: out[k] for k in ("rounds", "accuracy", "uplink_bytes", "downlink_bytes", "epsilon", "run_key",
                                "weights_key", "plot")}
