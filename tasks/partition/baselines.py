"""Baseline partitioners reported next to the optimised plan.

* ``equal_nodes``: a topological order cut into k blocks of (nearly) equal node count;
* ``param_balanced``: the same order cut into blocks of equal summed size (DeepSpeed's default "parameters" method);
* ``compute_balanced``: the optimal min-max slicing of the order by compute time alone, ignoring communication
  (GPipe style); its bottleneck is then evaluated with communication;
* ``expert``: the hand-made splits of msr-fiddle/dnn-partitioning (``human-experts/*.json``).

Cuts fall only between must-share groups, so co-location always holds; a baseline that breaks the memory cap or
needs more stages than k is reported as infeasible (``assignment`` None, ``message`` saying why), never repaired.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.partition.cost import InvalidPlanError, validate_plan
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.slicing import OrderSlicer
from forgeflow.tasks.solver import MEMORY_RTOL

BASELINES = ("equal_nodes", "param_balanced", "compute_balanced")


@dataclass(frozen=True)
class BaselinePlan:
    """A baseline's plan for k stages: ``bottleneck`` in ms (inf when infeasible) and node->stage ``assignment``."""

    method: str
    k: int
    bottleneck: float
    assignment: np.ndarray | None
    message: str = ""


def _evaluate(problem: PartitionProblem, method: str, k: int, assignment: np.ndarray) -> BaselinePlan:
    try:
        return BaselinePlan(method, k, validate_plan(problem, assignment, k).bottleneck, assignment)
    except InvalidPlanError as exc:
        return BaselinePlan(method, k, math.inf, None, str(exc))


def _cut_by_cumulative(slicer: OrderSlicer, weights: np.ndarray, k: int) -> np.ndarray:
    """Group stages from cutting the default group order where the running total crosses s * total / k."""
    order = slicer.default_order
    x = np.asarray(weights, dtype=float)[order]
    total = float(x.sum())
    if total <= 0:
        x = np.ones_like(x)
        total = float(x.size)
    # stage of each position: how many multiples of total/k lie before the group's midpoint
    mid = np.cumsum(x) - x / 2
    stage_at = np.minimum((mid / total * k).astype(np.int64), k - 1)
    gs = np.empty(slicer.G, dtype=np.int64)
    gs[order] = np.maximum.accumulate(stage_at)
    return gs


def equal_nodes(problem: PartitionProblem, k: int, slicer: OrderSlicer | None = None) -> BaselinePlan:
    slicer = slicer or OrderSlicer(problem)
    counts = np.array([len(ms) for ms in slicer.groups.members], dtype=float)
    return _evaluate(problem, "equal_nodes", k, slicer.node_assignment(_cut_by_cumulative(slicer, counts, k)))


def param_balanced(problem: PartitionProblem, k: int, slicer: OrderSlicer | None = None) -> BaselinePlan:
    slicer = slicer or OrderSlicer(problem)
    return _evaluate(problem, "param_balanced", k, slicer.node_assignment(_cut_by_cumulative(slicer, slicer.size, k)))


def compute_balanced(problem: PartitionProblem, k: int, slicer: OrderSlicer | None = None) -> BaselinePlan:
    slicer = slicer or OrderSlicer(problem)
    order = slicer.default_order
    G = slicer.G
    wp = np.concatenate([[0.0], np.cumsum(slicer.work[order])])
    C = wp[None, :] - wp[:, None]
    invalid = np.tri(G + 1, G + 1, -1, dtype=bool)
    if slicer.cap is not None:
        mp = np.concatenate([[0.0], np.cumsum(slicer.size[order])])
        invalid |= (mp[None, :] - mp[:, None]) > slicer.cap * (1 + MEMORY_RTOL)
    C[invalid] = np.inf
    np.fill_diagonal(C, 0.0)
    res = slicer.slice(order, k, C)
    if not math.isfinite(res.bottleneck):
        return BaselinePlan("compute_balanced", k, math.inf, None, "no slicing of the order fits the memory cap")
    return _evaluate(problem, "compute_balanced", k, slicer.node_assignment(res.group_stage))


def expert_assignment(problem: PartitionProblem, expert: Mapping[str, Any]) -> np.ndarray:
    """Node->stage assignment from an msr human-experts split (``{"fpgas": [{"nodes": [ids]}, ...], "cpus": ...}``).

    The device lists are put in pipeline order by the edges between them; raises InvalidGraphError when the split
    does not cover the graph, uses the CPU, or its devices cannot be ordered into a pipeline.
    """
    try:
        devices = [list(d["nodes"]) for d in expert["fpgas"]]
        cpu_nodes = [v for d in expert.get("cpus", []) for v in d.get("nodes", [])]
    except (KeyError, TypeError) as exc:
        raise InvalidGraphError(f"malformed expert split: missing field {exc}") from None
    if cpu_nodes:
        raise InvalidGraphError(f"expert split places {len(cpu_nodes)} nodes on the CPU (not in this cost model)")
    index = {nid: i for i, nid in enumerate(problem.node_ids)}
    dev = np.full(problem.n, -1, dtype=np.int64)
    for d, nodes in enumerate(devices):
        for nid in nodes:
            i = index.get(str(nid))
            if i is None:
                raise InvalidGraphError(f"expert split names node {nid!r}, which is not in the graph")
            dev[i] = d
    missing = np.flatnonzero(dev < 0)
    if missing.size:
        raise InvalidGraphError(f"expert split leaves {missing.size} nodes unplaced, e.g. {problem.node_ids[missing[0]]!r}")
    used = sorted(set(dev.tolist()))
    succ = {d: set() for d in used}
    for u, v in problem.edges:
        if dev[u] != dev[v]:
            succ[int(dev[u])].add(int(dev[v]))
    indeg = {d: 0 for d in used}
    for d in used:
        for e in succ[d]:
            indeg[e] += 1
    ready = sorted(d for d in used if indeg[d] == 0)
    rank: dict[int, int] = {}
    while ready:
        d = ready.pop(0)
        rank[d] = len(rank)
        for e in sorted(succ[d]):
            indeg[e] -= 1
            if indeg[e] == 0:
                ready.append(e)
    if len(rank) != len(used):
        raise InvalidGraphError("expert split has edges running both ways between two devices")
    return np.array([rank[int(d)] for d in dev], dtype=np.int64)


def expert_plan(problem: PartitionProblem, k: int, expert_path: str | Path) -> BaselinePlan:
    data = json.loads(Path(expert_path).read_text())
    try:
        a = expert_assignment(problem, data)
    except InvalidGraphError as exc:
        return BaselinePlan("expert", k, math.inf, None, str(exc))
    if int(a.max()) + 1 > k:
        return BaselinePlan("expert", k, math.inf, None, f"expert split uses {int(a.max()) + 1} devices, more than k={k}")
    return _evaluate(problem, "expert", k, a)


def all_baselines(problem: PartitionProblem, k: int, *, slicer: OrderSlicer | None = None,
                  expert_path: str | Path | None = None) -> list[BaselinePlan]:
    slicer = slicer or OrderSlicer(problem)
    out = [equal_nodes(problem, k, slicer), param_balanced(problem, k, slicer), compute_balanced(problem, k, slicer)]
    if expert_path is not None:
        out.append(expert_plan(problem, k, expert_path))
    return out
