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


ELASTIC_FIELDS = ("resolutions", "depths", "expand_ratios", "kernel_sizes")


def _space(name: str, arrays: dict | None = None):
    """The space a stored model was fitted for: its name, and for an elastic space its definition (stored with the
    model's arrays, so a model fitted on other resolutions or depths is never taken for the default space's)."""
    if name == "nb201":
        return NB201Space()
    if name == "elastic":
        arrays = arrays or {}
        if all(f"space.{f}" in arrays for f in ELASTIC_FIELDS):
            return ElasticSpace(**{f: tuple(int(v) for v in arrays[f"space.{f}"]) for f in ELASTIC_FIELDS},
                                n_stages=int(np.asarray(arrays["space.n_stages"]).ravel()[0]))
        return ElasticSpace()
    raise LatencyInputError(f"device model of unknown space {name!r}")


def _space_arrays(space) -> dict[str, np.ndarray]:
    if not isinstance(space, ElasticSpace):
        return {}
    out = {f"space.{f}": np.asarray(getattr(space, f), dtype=np.int64) for f in ELASTIC_FIELDS}
    return out | {"space.n_stages": np.asarray([space.n_stages], dtype=np.int64)}


def save_device(cat, run_id: str, device: str, model: DeviceModel, *, table: str, seconds: float) -> str:
    arrays = model.to_arrays() | _space_arrays(model.prior.space)
    key = cat.put_arrays({k: np.ascontiguousarray(v) for k, v in arrays.items()}, run_id=run_id,
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


class DeviceLatency:
    """A fitted device as a search's latency source: ``predict(genes) -> ms`` (the posterior median), the interface of
    the supernet's measured ``LatencyPredictor``, so it drops into ``SupernetObjective`` / ``PredictorObjective``.
    Picklable (arrays only), so candidate batches still fan out to Dask workers."""

    def __init__(self, device: str, model: DeviceModel) -> None:
        self.device, self.model = device, model

    def predict(self, genes: np.ndarray) -> np.ndarray:
        return self.model.predict(genes).latency_ms

    def describe(self) -> dict:
        return {"device": self.device, "space": self.model.prior.space.name,
                "n_measurements": self.model.n_measurements, "loo_log_rmse": round(self.model.loo_log_rmse(), 5)}


def device_latency(cat, device: str, space) -> DeviceLatency:
    """``device``'s fitted model as a latency source for a search over ``space``; a clear error when the device was
    fitted for another search space (e.g. NAS-Bench-201 cells, or an elastic space with other resolutions or
    depths) than the one searched."""
    model = load_device(cat, device)
    check_space(model, space, f"device {device!r}")
    return DeviceLatency(device, model)


def check_space(model, space, where: str) -> None:
    """A clear error when ``model`` was fitted for another search space than ``space`` (the one being searched)."""
    fitted = model.prior.space
    if fitted != space:
        raise LatencyInputError(f"{where}: the model was fitted for the {fitted.name} space (cardinalities "
                                f"{list(fitted.cardinalities)}), but the search runs over the {space.name} space "
                                f"(cardinalities {list(space.cardinalities)}): fit it with measurements of "
                                "architectures of this space")


def fitted_devices(cat) -> list[str]:
    try:
        t = cat.read("latency_devices", columns=["device"])
    except Exception:  # noqa: BLE001 - an empty catalog has no such table yet
        return []
    return sorted(set(t.column("device").to_pylist()))


def device_record(cat, device: str) -> dict:
    """The catalog row of the latest model fitted for ``device`` (``model_key`` names its exact arrays); a clear
    error naming the fitted devices otherwise."""
    try:
        t = cat.read("latency_devices", filter=pc.field("device") == device)
    except Exception:  # noqa: BLE001
        t = None
    if t is None or t.num_rows == 0:
        known = fitted_devices(cat)
        raise LatencyInputError(f"no latency model for device {device!r} in the catalog "
                                f"(fitted devices: {', '.join(known) if known else 'none'}; "
                                "run forgeflow latency fit first)")
    return max(t.to_pylist(), key=lambda r: (str(r.get("day")), r["run_id"]))


def load_device(cat, device: str, model_key: str | None = None) -> DeviceModel:
    """The latest model fitted for ``device`` (or exactly the one stored under ``model_key``, so a run that resolved
    a device keeps using that fit if the device is fitted again meanwhile); a clear error otherwise."""
    row = device_record(cat, device)
    if model_key is not None and model_key != row["model_key"]:
        rows = cat.read("latency_devices", filter=pc.field("model_key") == model_key).to_pylist()
        if not rows:
            raise LatencyInputError(f"latency model {model_key} of device {device!r} is not in the catalog")
        row = rows[0]
    arrays = cat.get_arrays(row["model_key"])
    return DeviceModel.from_arrays(_space(row["space"], arrays), json.loads(row["known_devices_json"]), arrays)
