"""What `forgeflow optimize` needs of a hardware target, as one frozen view over issue 18's ``HardwareTarget``.

The target file (``deploy/targets/*.yaml``) is read and validated by ``tasks.plan.target.load_target`` (one line
naming the field on a bad file). The run's own limits — a certified-bottleneck limit, an accuracy floor, the
microbatch size — are options of the command, not fields of the hardware description.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from forgeflow.tasks.plan.target import FLOAT_BITS, HardwareTarget, TargetError, load_target as load_hardware  # noqa: F401

#: widths offered to the planner on every device besides float (a width without kernels saves memory only)
DEFAULT_WIDTHS = (4, 8)


@dataclass(frozen=True)
class TargetView:
    name: str
    k: int
    memory_bytes: tuple[float, ...]
    speed: tuple[float, ...]  # device time = profiling-host time x speed
    bit_speedup: tuple[Mapping[int, float], ...]  # per device: width -> speed-up against float
    bits: tuple[int, ...]  # widths offered (32 = float always)
    link_bytes_per_s: float
    link_latency_ms: float
    budget_fraction: float | None  # sensitivity budget as a fraction of the uniform-4-bit sum
    budget_absolute: float | None
    latency_limit_ms: float | None  # certified bottleneck limit per microbatch (None: no limit)
    min_accuracy_pct: float | None
    microbatch: int
    source: str
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: per device: the fitted device model its time comes from (``tasks/deploy/device_latency.py``), else None
    latency_models: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.latency_models:
            object.__setattr__(self, "latency_models", (None,) * self.k)

    def transfer_ms(self, nbytes: float) -> float:
        return self.link_latency_ms + 1e3 * float(nbytes) / self.link_bytes_per_s

    def time_scale(self, device: int, bits: int) -> float:
        sp = 1.0 if bits >= FLOAT_BITS else float(self.bit_speedup[device].get(int(bits), 1.0))
        return self.speed[device] / sp

    def sensitivity_budget(self, units: Sequence) -> float | None:
        if self.budget_absolute is not None:
            return self.budget_absolute
        if self.budget_fraction is None:
            return None
        return self.budget_fraction * float(sum(u.sensitivity_at.get(4, 0.0) for u in units))

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "memory_bytes": list(self.memory_bytes), "speed": list(self.speed),
                "bit_speedup": [{str(b): v for b, v in d.items()} for d in self.bit_speedup], "bits": list(self.bits),
                "link_bytes_per_s": self.link_bytes_per_s, "link_latency_ms": self.link_latency_ms,
                "budget_fraction": self.budget_fraction, "budget_absolute": self.budget_absolute,
                "latency_limit_ms": self.latency_limit_ms, "min_accuracy_pct": self.min_accuracy_pct,
                "microbatch": self.microbatch, "source": self.source, "digest": self.digest, "raw": dict(self.raw),
                "latency_models": list(self.latency_models)}


def view_of(hw: HardwareTarget, source: str, *, latency_limit_ms: float | None = None,
            min_accuracy_pct: float | None = None, microbatch: int = 32) -> TargetView:
    devs = hw.device_list
    link = hw.slowest_link
    widths = sorted({FLOAT_BITS, *DEFAULT_WIDTHS, *(b for d in devs for b in d.bit_speedup if b < FLOAT_BITS)})
    return TargetView(
        name=hw.name, k=hw.k, memory_bytes=tuple(float(d.memory_bytes) for d in devs),
        speed=tuple(float(d.speed_factor) for d in devs), bit_speedup=tuple(dict(d.bit_speedup) for d in devs),
        bits=tuple(widths), link_bytes_per_s=float(link.bandwidth_bytes_per_s), link_latency_ms=float(link.latency_ms),
        budget_fraction=hw.budget.fraction_of_uniform4, budget_absolute=hw.budget.max_sensitivity,
        latency_limit_ms=latency_limit_ms, min_accuracy_pct=min_accuracy_pct, microbatch=int(microbatch),
        source=source, raw=hw.model_dump(mode="json"), latency_models=tuple(d.latency_model for d in devs))


def load_target(spec: str, latency_device: str | None = None, **limits) -> TargetView:
    """A target file path or a shipped target's name (``edge_npu_4x``); with ``latency_device``, every device takes
    its time from that fitted device model (``forgeflow optimize --latency-device``)."""
    hw = load_hardware(spec)
    if latency_device is not None:
        hw = hw.with_latency_model(latency_device)
    return view_of(hw, str(spec), **limits)


def target_from_json(d: Mapping[str, Any]) -> TargetView:
    hw = HardwareTarget.model_validate(d["raw"])
    return view_of(hw, d["source"], latency_limit_ms=d.get("latency_limit_ms"),
                   min_accuracy_pct=d.get("min_accuracy_pct"), microbatch=d.get("microbatch", 32))


def host_view(k: int, microbatch: int, link_bytes_per_s: float = 1.0e9, link_latency_ms: float = 0.15) -> TargetView:
    """This host as ``k`` pipelined processes: speed 1, no width speed-up, torch.multiprocessing queues as links."""
    hw = HardwareTarget.model_validate({
        "name": f"host-{k}", "devices": {"count": k, "name": "host-process", "memory_bytes": 1e12},
        "links": {"bandwidth_bytes_per_s": link_bytes_per_s, "latency_ms": link_latency_ms},
        "budget": {"fraction_of_uniform4": 1e9}})
    return view_of(hw, "host", microbatch=microbatch)
