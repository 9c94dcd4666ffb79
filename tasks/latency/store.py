"""Fitted device models in the catalog: ``save_device`` writes one, ``load_device`` reads the latest by name.

This is the latency source other steps take a fitted device from: ``load_device(cat, "my-npu").predict(genes)``
gives latency (ms) and its uncertainty for any architecture of the model's space (the supernet search, ``optimize``'s
search step, the joint planner's whole-network candidates).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc

from forgeflow.tasks.latency.fewshot import DeviceModel
from forgeflow.tasks.latency.table import LatencyInputError
from forgeflow.tasks.supernet.space import ElasticSpace, NB201Space


def _space(name: str):
    if name == "nb201":
        return NB201Space()
    if name == "elastic":
        return ElasticSpace()
    raise LatencyInputError(f"device model of unknown space {name!r}")


def save_device(cat, run_id: str, device: str, model: DeviceModel, *, table: str, seconds: float) -> str:
    key = cat.put_arrays({k: np.ascontiguousarray(v) for k, v in model.to_arrays().items()}, run_id=run_id,
                         description=f"latency model of device {device}")
    space = model.prior.space
    cat.append("latency_measurements", [{"device": device, "arch": space.to_string(g), "latency_ms": float(v)}
                                        for g, v in zip(model.genes, model.latency_ms)], run_id=run_id)
    cat.append("latency_devices", [{
        "device": device, "space": space.name, "n_measurements": model.n_measurements,
        "known_devices_json": json.dumps(model.prior.devices), "table": table, "model_key": key,
        "log_params_json": json.dumps([float(v) for v in model.log_params]), "loo_log_rmse": model.loo_log_rmse(),
        "noise_log_std": model.noise_log_std, "fit_seconds": float(seconds)}], run_id=run_id)
    return key


def fitted_devices(cat) -> list[str]:
    try:
        t = cat.read("latency_devices", columns=["device"])
    except Exception:  # noqa: BLE001 - an empty catalog has no such table yet
        return []
    return sorted(set(t.column("device").to_pylist()))


def load_device(cat, device: str) -> DeviceModel:
    """The latest model fitted for ``device``; a clear error naming the fitted devices otherwise."""
    try:
        t = cat.read("latency_devices", filter=pc.field("device") == device)
    except Exception:  # noqa: BLE001
        t = None
    if t is None or t.num_rows == 0:
        known = fitted_devices(cat)
        raise LatencyInputError(f"no latency model for device {device!r} in the catalog "
                                f"(fitted devices: {', '.join(known) if known else 'none'}; "
                                "run forgeflow latency fit first)")
    rows = t.to_pylist()
    row = max(rows, key=lambda r: (str(r.get("day")), r["run_id"]))
    arrays = cat.get_arrays(row["model_key"])
    return DeviceModel.from_arrays(_space(row["space"]), json.loads(row["known_devices_json"]), arrays)
