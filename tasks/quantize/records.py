"""Catalog rows of the quantize tables, and the objects rebuilt from them (no Prefect, no flow logic)."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from forgeflow.tasks.quantize.errors import QuantizeError
from forgeflow.tasks.quantize.ilp import Allocation
from forgeflow.tasks.quantize.layers import LayerInfo
from forgeflow.tasks.quantize.problem import AllocationProblem
from forgeflow.tasks.quantize.sensitivity import LayerSensitivity


def sensitivity_rows(model: str, infos: Sequence[LayerInfo], sens: Sequence[LayerSensitivity],
                     base_bytes: float) -> list[dict[str, Any]]:
    by_name = {s.name: s for s in sens}
    rows = []
    for info in infos:
        s = by_name[info.name]
        for b, pert in sorted(s.perturbation.items()):
            rows.append({"model": model, "layer": info.name, "kind": info.kind, "weight_numel": info.weight_numel,
                         "out_channels": info.out_channels, "bias_numel": info.bias_numel, "macs": info.macs,
                         "trace": s.trace, "trace_stderr": s.trace_stderr, "samples": s.samples, "bits": int(b),
                         "perturbation": pert, "cost": s.cost(b), "base_bytes": base_bytes})
    return rows


def from_sensitivity_rows(table: pa.Table) -> tuple[list[LayerInfo], list[LayerSensitivity], float]:
    """Layers (in the order first written), their sensitivities, and the plan-independent bytes."""
    rows = table.to_pylist()
    if not rows:
        raise QuantizeError("no sensitivity rows to build the allocation problem from")
    order: list[str] = []
    per: dict[str, list[dict]] = {}
    for r in rows:
        if r["layer"] not in per:
            order.append(r["layer"])
        per.setdefault(r["layer"], []).append(r)
    infos, sens = [], []
    for name in order:
        r0 = per[name][0]
        infos.append(LayerInfo(name, r0["kind"], int(r0["weight_numel"]), int(r0["out_channels"]),
                               int(r0["bias_numel"]), int(r0["macs"])))
        n = int(r0["weight_numel"])
        sens.append(LayerSensitivity(name, float(r0["trace"]), float(r0["trace"]) / n, float(r0["trace_stderr"]),
                                     int(r0["samples"]), {int(r["bits"]): float(r["perturbation"]) for r in per[name]}))
    return infos, sens, float(rows[0]["base_bytes"])


def plan_rows(plan_id: str, model: str, kind: str, problem: AllocationProblem, bits: Mapping[str, int],
              allocation: Allocation | None, act_bits: int | None,
              torchao: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    totals = allocation.totals if allocation is not None else problem.plan_totals(bits)
    objective = allocation.objective if allocation is not None else problem.plan_totals(bits)["objective"]
    torchao = torchao or {}

    def num(v):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    return [{"plan_id": plan_id, "model": model, "kind": kind, "layer": name, "bits": int(bits[name]),
             "status": allocation.status.value if allocation is not None else "given",
             "objective": float(objective), "dual_bound": num(allocation.dual_bound) if allocation else None,
             "seconds": float(allocation.seconds) if allocation else None,
             "size_bytes": num(totals.get("size_bytes")), "bops": num(totals.get("bops")),
             "latency_ms": num(totals.get("latency_ms")),
             "budget_size_bytes": num(problem.budgets.get("size_bytes")),
             "budget_bops": num(problem.budgets.get("bops")),
             "budget_latency_ms": num(problem.budgets.get("latency_ms")),
             "act_bits": act_bits,
             "torchao_config": json.dumps(torchao[name]) if name in torchao else None}
            for name in problem.layers]
