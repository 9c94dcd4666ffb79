"""Frozen results of a joint solve: the validated plan, its certificate, the baselines and every method's run.

``PlanResult`` carries ``bottleneck``, ``lower_bound``, ``ratio`` and ``status`` exactly as
``tasks.partition.result.PartitionResult`` does; ``to_plan_json()`` is PLAN.json and ``to_arrow()`` the rows of the
catalog tables declared in ``catalog/tables/plan.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from forgeflow.tasks.partition.result import Certified, MethodRun, _jsonable
from forgeflow.tasks.partition.status import Bound, SolveStatus
from forgeflow.tasks.plan.instance import PlanInstance
from forgeflow.tasks.plan.validate import validate_joint
from forgeflow.tasks.solver import is_proven


@dataclass(frozen=True)
class JointPlan:
    """A plan accepted by the independent validator (``JointPlan.checked`` is the only constructor solvers use)."""

    k: int
    method: str
    assignment: tuple[int, ...]
    choice: tuple[int, ...]
    bits: tuple[int, ...]
    stages: tuple[tuple[Any, ...], ...]
    bottleneck: float
    compute_ms: tuple[float, ...]
    comm_in_ms: tuple[float, ...]
    comm_out_ms: tuple[float, ...]
    memory: tuple[float, ...]
    sensitivity: float

    @classmethod
    def checked(cls, inst: PlanInstance, assignment, choice, method: str) -> "JointPlan":
        loads = validate_joint(inst, assignment, choice)
        a = np.asarray(assignment, dtype=np.int64)
        ch = np.asarray(choice, dtype=np.int64)
        stages: list[list[Any]] = [[] for _ in range(inst.k)]
        for v in inst.base.topological_order():
            stages[int(a[v])].append(inst.raw_ids[v])
        bits = inst.bits[np.arange(inst.n), ch]
        return cls(inst.k, method, tuple(int(x) for x in a), tuple(int(x) for x in ch), tuple(int(b) for b in bits),
                   tuple(tuple(s) for s in stages), loads.bottleneck, tuple(map(float, loads.compute)),
                   tuple(map(float, loads.comm_in)), tuple(map(float, loads.comm_out)),
                   tuple(map(float, loads.memory)), loads.sensitivity)

    @property
    def stage_totals(self) -> tuple[float, ...]:
        return tuple(a + b + c for a, b, c in zip(self.compute_ms, self.comm_in_ms, self.comm_out_ms))


@dataclass(frozen=True)
class BaselineOutcome:
    """A baseline's plan on the same instance (None when it finds no valid plan; ``message`` says why)."""

    method: str
    plan: JointPlan | None
    message: str = ""

    @property
    def bottleneck(self) -> float:
        return self.plan.bottleneck if self.plan is not None else math.inf


@dataclass(frozen=True)
class PlanResult(Certified):
    instance_name: str
    k: int
    budget: float | None
    plan: JointPlan
    lower_bound: Bound
    runs: tuple[MethodRun, ...]
    baselines: tuple[BaselineOutcome, ...]
    seconds: float
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> SolveStatus:
        """OPTIMAL when the certified bound proves the plan optimal (``tasks.solver.is_proven``, the threshold every
        plan forgeflow reports shares)."""
        closed = is_proven(self.plan.bottleneck, self.lower_bound.value)
        return SolveStatus.OPTIMAL if closed else SolveStatus.FEASIBLE

    def to_plan_json(self) -> dict[str, Any]:
        p = self.plan
        ids = [i for s in p.stages for i in s]
        bits_by_id = dict(zip(self._ids(), p.bits))
        return {
            "instance": self.instance_name,
            "k": self.k,
            "stages": [list(s) for s in p.stages],
            "bits": {str(i): int(bits_by_id[i]) for i in ids},
            "bottleneck": p.bottleneck,
            "lower_bound": self.lower_bound.value,
            "ratio": self.ratio if math.isfinite(self.ratio) else None,
            "status": self.status.value,
            "sensitivity": p.sensitivity,
            "budget": self.budget,
            "stage_memory": list(p.memory),
            "method": p.method,
            "lower_bound_method": self.lower_bound.method,
            "stage_loads": [{"stage": s, "compute_ms": p.compute_ms[s], "comm_in_ms": p.comm_in_ms[s],
                             "comm_out_ms": p.comm_out_ms[s], "total_ms": p.stage_totals[s], "memory": p.memory[s]}
                            for s in range(self.k)],
            "baselines": {b.method: (b.bottleneck if b.plan is not None else None) for b in self.baselines},
            "baseline_notes": {b.method: b.message for b in self.baselines if b.message},
            "sensitivity_source": self.meta.get("sensitivity_source"),
            "target": self.meta.get("target"),
            "methods": [{"method": r.method, "kind": r.kind, "status": r.status.value, "seconds": round(r.seconds, 4),
                         "value": None if r.value is None or not math.isfinite(r.value) else r.value,
                         "detail": _jsonable(r.detail)} for r in self.runs],
            "seconds": round(self.seconds, 4),
        }

    def _ids(self) -> list[Any]:
        return list(self.meta.get("raw_ids", ()))

    def to_arrow(self, inst: PlanInstance, result_id: str) -> dict[str, pa.Table]:
        """Rows of ``plan_results``, ``plan_choices`` (node -> stage, bits) and ``plan_baselines``."""
        p = self.plan
        gid = str(inst.meta.get("graph_id", "") or "")
        summary = pa.table({
            "result_id": [result_id], "graph_id": [gid], "instance": [self.instance_name], "k": [self.k],
            "target": [str(self.meta.get("target") or "")], "budget": [self.budget],
            "bottleneck_ms": [p.bottleneck], "lower_bound_ms": [self.lower_bound.value], "ratio": [self.ratio],
            "status": [self.status.value], "sensitivity": [p.sensitivity], "method": [p.method],
            "lower_bound_method": [self.lower_bound.method],
            "sensitivity_source": [str(self.meta.get("sensitivity_source") or "")], "seconds": [self.seconds],
        })
        n = inst.n
        choices = pa.table({
            "result_id": [result_id] * n, "node_id": [str(x) for x in inst.raw_ids],
            "stage": np.asarray(p.assignment, dtype=np.int32), "bits": np.asarray(p.bits, dtype=np.int32),
            "time_ms": inst.time[np.asarray(p.assignment), np.arange(n), np.asarray(p.choice)].astype(float),
            "size": inst.size[np.arange(n), np.asarray(p.choice)].astype(float),
            "sensitivity": inst.sens[np.arange(n), np.asarray(p.choice)].astype(float),
        })
        bl = list(self.baselines)
        baselines = pa.table({
            "result_id": [result_id] * len(bl), "method": [b.method for b in bl],
            "bottleneck_ms": [b.bottleneck if b.plan is not None else None for b in bl],
            "sensitivity": [b.plan.sensitivity if b.plan is not None else None for b in bl],
            "message": [b.message for b in bl],
        })
        return {"plan_results": summary, "plan_choices": choices, "plan_baselines": baselines}
