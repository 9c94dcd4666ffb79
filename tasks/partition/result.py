"""Frozen results of a partitioning solve: the plan, its certificate, and what every method did.

``PartitionResult.to_plan_json()`` is the PLAN.json users get (``k``, ``stages`` as k lists of node ids in pipeline
order, ``bottleneck``, ``lower_bound``, ``ratio`` plus methods, timings and statuses); ``to_arrow()`` gives the rows of
the catalog tables declared in ``catalog/tables/partition.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from forgeflow.tasks.partition.cost import StageLoads, stages_in_pipeline_order, validate_plan
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.status import Bound, SolveStatus, is_proven


@dataclass(frozen=True)
class Plan:
    """A validated plan: node->stage ``assignment`` (0-based, pipeline order), its ``bottleneck`` (ms) and loads,
    recomputed by the independent validator (``Plan.checked`` is the only constructor the solvers use)."""

    k: int
    method: str
    assignment: tuple[int, ...]
    stages: tuple[tuple[str, ...], ...]
    bottleneck: float
    compute_ms: tuple[float, ...]
    comm_in_ms: tuple[float, ...]
    comm_out_ms: tuple[float, ...]
    memory: tuple[float, ...]

    @classmethod
    def checked(cls, problem: PartitionProblem, assignment: np.ndarray, method: str, k: int | None = None) -> "Plan":
        k = problem.k if k is None else int(k)
        loads: StageLoads = validate_plan(problem, assignment, k)
        a = np.asarray(assignment, dtype=np.int64)
        stages = stages_in_pipeline_order(problem, a, k)
        return cls(k, method, tuple(int(x) for x in a), tuple(tuple(s) for s in stages), loads.bottleneck,
                   tuple(map(float, loads.compute)), tuple(map(float, loads.comm_in)),
                   tuple(map(float, loads.comm_out)), tuple(map(float, loads.memory)))

    @property
    def stage_totals(self) -> tuple[float, ...]:
        return tuple(a + b + c for a, b, c in zip(self.compute_ms, self.comm_in_ms, self.comm_out_ms))


@dataclass(frozen=True)
class MethodRun:
    """One method's run: how it ended, its wall seconds, the bottleneck of its best plan (upper bound, ms) or the
    lower bound it proved, and details (evaluations, ideals, seeds, messages ...)."""

    method: str
    kind: str  # "upper" | "lower" | "exact" | "baseline"
    status: SolveStatus
    seconds: float
    value: float | None
    detail: Mapping[str, Any] = field(default_factory=dict)


class Certified:
    """What every certified result (``plan`` with a ``bottleneck``, proven ``lower_bound``) reports the same way."""

    @property
    def bottleneck(self) -> float:
        return self.plan.bottleneck

    @property
    def ratio(self) -> float:
        """Certified ratio bottleneck / proven lower bound (>= 1; inf when the bound is 0)."""
        lb = self.lower_bound.value
        if self.plan.bottleneck <= 0:
            return 1.0
        return self.plan.bottleneck / lb if lb > 0 else math.inf


@dataclass(frozen=True)
class PartitionResult(Certified):
    """The best plan, the best proven lower bound and which method proved it, every method's run, and the trace of
    how plan and bound improved over time."""

    problem_name: str
    graph_id: str | None
    k: int
    mem_cap: float | None
    plan: Plan
    lower_bound: Bound
    runs: tuple[MethodRun, ...]
    seconds: float
    #: (seconds since the start, best plan's bottleneck, best proven bound) each time either improved
    trace: tuple[tuple[float, float, float], ...] = ()

    def seconds_to_ratio(self, ratio: float) -> float | None:
        """When the certified ratio (plan / bound) first reached ``ratio`` or better (None if it never did)."""
        for t, ub, lb in self.trace:
            if lb > 0 and math.isfinite(ub) and ub <= ratio * lb:
                return t
        return None

    @property
    def status(self) -> SolveStatus:
        return SolveStatus.OPTIMAL if is_proven(self.plan.bottleneck, self.lower_bound.value) else SolveStatus.FEASIBLE

    @property
    def throughput(self) -> float:
        """Inferences per ms at steady state (1 / bottleneck)."""
        return 1.0 / self.plan.bottleneck if self.plan.bottleneck > 0 else math.inf

    def to_plan_json(self) -> dict[str, Any]:
        return {
            "graph": self.problem_name,
            "graph_id": self.graph_id,
            "k": self.k,
            "memory_cap": self.mem_cap,
            "stages": [list(s) for s in self.plan.stages],
            "bottleneck": self.plan.bottleneck,
            "lower_bound": self.lower_bound.value,
            "ratio": self.ratio if math.isfinite(self.ratio) else None,  # None: no positive bound was proven
            "status": self.status.value,
            "method": self.plan.method,
            "lower_bound_method": self.lower_bound.method,
            "stage_loads": [
                {"stage": s, "compute_ms": self.plan.compute_ms[s], "comm_in_ms": self.plan.comm_in_ms[s],
                 "comm_out_ms": self.plan.comm_out_ms[s], "total_ms": self.plan.stage_totals[s],
                 "memory": self.plan.memory[s]}
                for s in range(self.k)
            ],
            "methods": [
                {"method": r.method, "kind": r.kind, "status": r.status.value, "seconds": round(r.seconds, 4),
                 "value": None if r.value is None or not math.isfinite(r.value) else r.value,
                 "detail": _jsonable(r.detail)}
                for r in self.runs
            ],
            "seconds": round(self.seconds, 4),
        }

    def to_arrow(self, problem: PartitionProblem, result_id: str) -> dict[str, pa.Table]:
        """Rows for the catalog tables ``partition_results``, ``partition_plans`` (node -> stage),
        ``partition_stage_loads`` and ``partition_bounds``, keyed by ``result_id``."""
        gid = self.graph_id or ""
        summary = pa.table({
            "result_id": [result_id], "graph_id": [gid], "graph_name": [self.problem_name], "k": [self.k],
            "memory_cap": [self.mem_cap], "bottleneck_ms": [self.plan.bottleneck],
            "lower_bound_ms": [self.lower_bound.value], "ratio": [self.ratio], "status": [self.status.value],
            "method": [self.plan.method], "lower_bound_method": [self.lower_bound.method],
            "seconds": [self.seconds],
        })
        a = np.asarray(self.plan.assignment, dtype=np.int64)
        plans = pa.table({
            "result_id": [result_id] * problem.n, "graph_id": [gid] * problem.n,
            "node_id": list(problem.node_ids), "stage": a.astype(np.int32),
        })
        loads = pa.table({
            "result_id": [result_id] * self.k, "graph_id": [gid] * self.k,
            "stage": np.arange(self.k, dtype=np.int32),
            "num_nodes": np.bincount(a, minlength=self.k).astype(np.int64),
            "compute_ms": list(self.plan.compute_ms), "comm_in_ms": list(self.plan.comm_in_ms),
            "comm_out_ms": list(self.plan.comm_out_ms), "total_ms": list(self.plan.stage_totals),
            "memory": list(self.plan.memory),
        })
        runs = list(self.runs)
        bounds = pa.table({
            "result_id": [result_id] * len(runs), "graph_id": [gid] * len(runs),
            "method": [r.method for r in runs], "kind": [r.kind for r in runs],
            "status": [r.status.value for r in runs],
            "value_ms": [None if r.value is None or not math.isfinite(r.value) else float(r.value) for r in runs],
            "seconds": [float(r.seconds) for r in runs],
            "is_best": [(r.kind in ("lower", "exact") and r.method == self.lower_bound.method)
                        or (r.kind in ("upper", "exact") and r.method == self.plan.method) for r in runs],
        })
        return {"partition_results": summary, "partition_plans": plans, "partition_stage_loads": loads,
                "partition_bounds": bounds}


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)
