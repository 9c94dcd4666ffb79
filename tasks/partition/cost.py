"""Stage cost of a plan and the independent plan validator.

A plan is an ``assignment``: ``assignment[v]`` is the 0-based pipeline stage of node ``v``. A stage costs
sum(w over its nodes) + c_u for each node u in it whose output leaves it (counted once) + c_u for each node u outside
it with an edge into it (counted once per receiving stage). All times are in ms, sizes in the units of ``m``.

This module recomputes everything from the problem's arrays and shares no code with the solvers, so it can check
their plans: every plan is validated here before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.solver import MEMORY_RTOL  # relative slack of every memory-cap comparison (re-exported here)


class InvalidPlanError(ForgeflowError):
    """A plan that breaks the ordering, co-location or memory constraints of its problem."""


@dataclass(frozen=True)
class StageLoads:
    """Per-stage loads of a plan, each an array of length k: compute (ms), incoming and outgoing transfer (ms), size."""

    compute: np.ndarray
    comm_in: np.ndarray
    comm_out: np.ndarray
    memory: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.compute + self.comm_in + self.comm_out

    @property
    def bottleneck(self) -> float:
        return float(self.total.max()) if self.total.size else 0.0


def stage_loads(problem: PartitionProblem, assignment: np.ndarray, k: int | None = None) -> StageLoads:
    """Loads of every stage of ``assignment`` (no validation; see :func:`validate_plan`)."""
    a = np.asarray(assignment, dtype=np.int64)
    k = problem.k if k is None else int(k)
    k = max(k, int(a.max()) + 1 if a.size else 1)
    compute = np.bincount(a, weights=problem.w, minlength=k).astype(float)
    memory = np.bincount(a, weights=problem.m, minlength=k).astype(float)
    comm_in = np.zeros(k)
    comm_out = np.zeros(k)
    if problem.edges:
        e = np.asarray(problem.edges, dtype=np.int64)
        u, v = e[:, 0], e[:, 1]
        cross = a[u] != a[v]
        # a sender pays its output once however many later stages read it
        leaving = np.unique(u[cross])
        np.add.at(comm_out, a[leaving], problem.c[leaving])
        # a receiving stage pays each outside sender once however many of its nodes read it
        pairs = np.unique(np.stack([u[cross], a[v[cross]]], axis=1), axis=0)
        if pairs.size:
            np.add.at(comm_in, pairs[:, 1], problem.c[pairs[:, 0]])
    return StageLoads(compute, comm_in, comm_out, memory)


def validate_plan(problem: PartitionProblem, assignment: np.ndarray, k: int | None = None) -> StageLoads:
    """Check ``assignment`` against the problem and return its recomputed loads.

    Raises :class:`InvalidPlanError` naming the first violated rule: shape/range, an edge running to an earlier stage,
    a co-location class split over stages, a stage over the memory cap.
    """
    k = problem.k if k is None else int(k)
    a = np.asarray(assignment)
    if a.shape != (problem.n,):
        raise InvalidPlanError(f"plan assigns {a.shape} nodes, the graph has {problem.n}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise InvalidPlanError("plan stages must be integers")
        a = a.astype(np.int64)
    a = a.astype(np.int64)
    bad = np.flatnonzero((a < 0) | (a >= k))
    if bad.size:
        i = int(bad[0])
        raise InvalidPlanError(f"node {problem.node_ids[i]!r} is in stage {int(a[i])}, outside 0..{k - 1}")
    for u, v in problem.edges:
        if a[u] > a[v]:
            raise InvalidPlanError(
                f"edge {problem.node_ids[u]!r} -> {problem.node_ids[v]!r} runs backwards, from stage {int(a[u])} to "
                f"stage {int(a[v])}"
            )
    for cls in problem.classes:
        if len(cls) > 1 and len({int(a[i]) for i in cls}) > 1:
            ids = [problem.node_ids[i] for i in cls[:4]]
            raise InvalidPlanError(f"co-location class of nodes {ids} is split over stages "
                                   f"{sorted({int(a[i]) for i in cls})}")
    loads = stage_loads(problem, a, k)
    if problem.mem_cap is not None:
        over = np.flatnonzero(loads.memory > problem.mem_cap * (1 + MEMORY_RTOL))
        if over.size:
            s = int(over[0])
            raise InvalidPlanError(f"stage {s} holds size {loads.memory[s]:g}, above the memory cap {problem.mem_cap:g}")
    return loads


def plan_bottleneck(problem: PartitionProblem, assignment: np.ndarray, k: int | None = None) -> float:
    """The bottleneck (ms) of a valid plan; raises :class:`InvalidPlanError` on an invalid one."""
    return validate_plan(problem, assignment, k).bottleneck


def stages_in_pipeline_order(problem: PartitionProblem, assignment: np.ndarray, k: int) -> list[list[str]]:
    """k lists of node ids (as in the input); within a stage nodes follow a topological order of the graph."""
    a = np.asarray(assignment, dtype=np.int64)
    stages: list[list[str]] = [[] for _ in range(k)]
    for v in problem.topological_order():
        stages[int(a[v])].append(problem.node_ids[v])
    return stages
