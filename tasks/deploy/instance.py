"""A subnet's chain of units on a target, as a joint placement-and-precision instance.

The instance is msr-fiddle's graph JSON with the joint planner's additions (issue 18's documented format): one node
per unit with its float ``fpgaLatency``/``size`` and ``bitOptions`` (``bits``, ``latency``, ``size``,
``sensitivity``), an edge between consecutive units whose ``cost`` is the transfer time of the boundary tensor over
the target's link, ``maxFPGAs`` = the target's devices, ``maxSizePerFPGA`` = a device's memory and
``sensitivityBudget`` = the target's budget. Latencies are the units' measured times on the profiling host for one
microbatch (``tasks/deploy/profile.py``), scaled by the device's speed factor and divided by the speed-up of the
width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from forgeflow.tasks.quantize.layers import quantizable_modules
from forgeflow.tasks.quantize.problem import FLOAT_BITS


@dataclass(frozen=True)
class UnitCost:
    """One unit: host latency (ms per microbatch), float bytes, bytes and sensitivity per width, output bytes."""

    name: str
    host_ms: float
    float_bytes: float
    bytes_at: Mapping[int, float]
    sensitivity_at: Mapping[int, float]
    out_bytes: float
    layers: tuple[str, ...]


def _param_bytes(unit: nn.Module, bits: int) -> float:
    """Bytes of a unit at ``bits``: quantizable weights packed (+ a float32 scale per output channel), everything
    else (BN parameters and statistics, biases) in float32."""
    qmods = quantizable_modules(unit)
    qnames = {f"{n}.weight" for n in qmods}
    total = 0.0
    for name, t in list(unit.named_parameters()) + list(unit.named_buffers()):
        if name in qnames and bits < FLOAT_BITS:
            total += t.numel() * bits / 8 + 4.0 * t.shape[0]
        elif t.is_floating_point():
            total += 4.0 * t.numel()
    return total


def unit_costs(chain: nn.Sequential, names: Sequence[str], host_ms: Sequence[float], layer_cost,
               bits: Sequence[int], microbatch: int, input_shape: tuple[int, ...]) -> list[UnitCost]:
    """``layer_cost(fqn, bits)``: the sensitivity of the chain's quantizable layer ``fqn`` at ``bits`` (0 at 32)."""
    widths = sorted({int(b) for b in bits} | {FLOAT_BITS})
    x = torch.zeros((microbatch, *input_shape[1:]))
    out = []
    with torch.no_grad():
        for i, (unit, name) in enumerate(zip(chain, names)):
            x = unit(x)
            layers = tuple(f"{i}.{n}" for n in quantizable_modules(unit))
            out.append(UnitCost(
                name=name, host_ms=float(host_ms[i]), float_bytes=_param_bytes(unit, FLOAT_BITS),
                bytes_at={b: _param_bytes(unit, b) for b in widths},
                sensitivity_at={b: float(sum(layer_cost(l, b) for l in layers)) if b < FLOAT_BITS else 0.0
                                for b in widths},
                out_bytes=4.0 * x.numel(), layers=layers))
    return out


def uniform_sensitivity(units: Sequence[UnitCost], bits: int) -> float:
    return float(sum(u.sensitivity_at[bits] for u in units))


def build_instance(units: Sequence[UnitCost], target, name: str, k: int | None = None) -> dict[str, Any]:
    """The joint instance (msr JSON + bitOptions + stageDevices) of ``units`` on ``target`` (a
    ``tasks.deploy.target.TargetView``), with ``k`` stages (default: every device of the target). Option latencies
    are host times; each stage's device scales them (``timeScale`` = speed factor / width speed-up)."""
    k = target.k if k is None else int(k)
    nodes = []
    for u in units:
        options = [{"bits": b, "latency": u.host_ms, "size": u.bytes_at[b], "sensitivity": u.sensitivity_at[b]}
                   for b in target.bits if b < FLOAT_BITS]
        nodes.append({"id": u.name, "fpgaLatency": u.host_ms, "size": u.float_bytes, "bitOptions": options})
    edges = [{"sourceId": a.name, "destId": b.name, "cost": target.transfer_ms(a.out_bytes)}
             for a, b in zip(units, units[1:])]
    devices = [{"name": f"device{s}", "memory": target.memory_bytes[s],
                "timeScale": {str(b): target.time_scale(s, b) for b in target.bits}} for s in range(k)]
    return {"name": name, "maxFPGAs": k, "maxCPUs": 0, "maxSizePerFPGA": min(target.memory_bytes[:k]),
            "sensitivityBudget": target.sensitivity_budget(units), "nodes": nodes, "edges": edges,
            "stageDevices": devices}
