"""A fitted device model as a target device's latency source (``latency_model:`` in a target file).

``forgeflow latency fit --device NAME`` stores a model that predicts, for any architecture of a search space, its
whole-network latency on that device (ms for one microbatch, as measured) with a posterior uncertainty. A target
device naming it (``latency_model: NAME``) takes its time per candidate from that prediction instead of a fixed
``speed_factor``: for candidate subnet ``a``, the device's speed factor is ``predicted_ms(a) / host_ms(a)`` (host_ms:
the sum of the subnet's units as profiled on this host), so each unit costs its host time scaled to the predicted
whole-network latency, and widths still divide it by the device's ``bit_speedup``. The split of a subnet's time over
its units follows the host's profile; the total follows the device.

The prediction's 90 % interval is carried through: a plan reports the bottleneck it certifies at the predicted
latency and the bottleneck of the same plan at either end of the interval.

``resolve`` checks every named model before a run (it exists in the run's catalog and was fitted for the family's
search space: one clear error otherwise) and pins each to its stored version (``model_key``), so a run, its cached
steps and its report use one fit even if the device is fitted again meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from forgeflow.tasks.latency.fewshot import DeviceModel
from forgeflow.tasks.latency.table import LatencyInputError


def resolve(cat, target, space) -> dict[str, dict[str, Any]]:
    """Model name -> its pinned catalog record, for every ``latency_model`` of ``target`` (a ``TargetView``); {} when
    the target names none. One ``LatencyInputError`` naming the device field for an unknown model or a model of
    another search space."""
    from forgeflow.tasks.latency.store import check_space, device_record, load_device

    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(target.latency_models):
        if name is None or name in out:
            continue
        where = f"target {target.name}, device {i} (latency_model {name!r})"
        try:
            row = device_record(cat, name)
        except LatencyInputError as exc:
            raise LatencyInputError(f"{where}: {exc}") from None
        model = load_device(cat, name, row["model_key"])
        check_space(model, space, where)
        out[name] = {"model_key": row["model_key"], "space": model.prior.space.name,
                     "n_measurements": int(row["n_measurements"]), "loo_log_rmse": float(row["loo_log_rmse"])}
    return out


@dataclass
class TargetLatency:
    """The fitted models of a target's devices (arrays only: picklable, so search candidates still fan out)."""

    models: Mapping[str, DeviceModel]
    records: Mapping[str, Mapping[str, Any]]

    @classmethod
    def load(cls, cat, resolved: Mapping[str, Mapping[str, Any]] | None) -> "TargetLatency | None":
        from forgeflow.tasks.latency.store import load_device

        if not resolved:
            return None
        return cls({n: load_device(cat, n, r["model_key"]) for n, r in resolved.items()}, dict(resolved))

    def predict(self, genes: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Model name -> {latency_ms, lower_ms, upper_ms, log_std} for each row of ``genes``."""
        out = {}
        for name, m in self.models.items():
            p = m.predict(np.atleast_2d(genes))
            out[name] = {"latency_ms": p.latency_ms, "lower_ms": p.lower, "upper_ms": p.upper, "log_std": p.log_std}
        return out

    def apply(self, target, genes: np.ndarray, host_ms: float):
        """(``target`` with each model-driven device's speed set for this candidate, the prediction record)."""
        pred = {n: {k: float(v[0]) for k, v in p.items()} for n, p in self.predict(genes).items()}
        host_ms = max(float(host_ms), 1e-12)
        speed = tuple(s if n is None else pred[n]["latency_ms"] / host_ms
                      for s, n in zip(target.speed, target.latency_models))
        devices = [{"device": i, "latency_model": n, **pred[n], "speed": speed[i]}
                   for i, n in enumerate(target.latency_models) if n is not None]
        return replace(target, speed=speed), {"host_ms": host_ms, "devices": devices}


def bottleneck_interval(plan, units: Sequence, target, info: Mapping[str, Any]) -> tuple[float, float]:
    """The plan's bottleneck (same stages, same widths) when every model-driven device runs at the lower, then the
    upper end of its 90 % interval: a stage's compute scales with its device's latency, its transfers do not."""
    host = {u.name: u.host_ms for u in units}
    ratio = {d["device"]: (d["lower_ms"] / d["latency_ms"], d["upper_ms"] / d["latency_ms"]) for d in info["devices"]}
    ends = []
    for end in (0, 1):
        worst = 0.0
        for s, stage in enumerate(plan.stages):
            dev = plan.devices[s] if plan.devices else s
            compute = sum(host[u] * target.time_scale(dev, int(plan.bits[u])) for u in stage)
            f = ratio.get(dev, (1.0, 1.0))[end]
            worst = max(worst, plan.stage_ms[s] + compute * (f - 1.0))
        ends.append(worst)
    return ends[0], ends[1]


def describe(info: Mapping[str, Any] | None) -> list[str]:
    """One line per model-driven device of a planned subnet (the CLI's and the report's wording)."""
    if not info:
        return []
    lo, hi = info.get("bottleneck_interval_ms") or (float("nan"), float("nan"))
    out = []
    for d in info["devices"]:
        m = (info.get("models") or {}).get(d["latency_model"], {})
        out.append(f"device {d['device']} from fitted model {d['latency_model']!r} ({m.get('n_measurements', '?')} "
                   f"measurements, leave-one-out log error {m.get('loo_log_rmse', float('nan')):.3f}): the subnet "
                   f"{d['latency_ms']:.4g} ms [{d['lower_ms']:.4g}, {d['upper_ms']:.4g}] (90 %); this plan's "
                   f"bottleneck over that interval [{lo:.4g}, {hi:.4g}] ms")
    return out
