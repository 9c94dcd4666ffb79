"""Stages and bit widths of a chain instance, with a certified bound: the one call `optimize` makes to plan.

``plan_instance`` returns a ``ChainPlan``. It uses the joint placement-and-precision planner (``tasks.plan``) when it
is installed. Without it, it falls back to the best *uniform-precision* plan: for each width the target runs, the
exact pipeline partition (``tasks.partition``, certified lower bound) of the chain at that width under the memory
cap, among the widths whose total sensitivity fits the budget, the one with the smallest bottleneck. The fallback is
named in ``planner`` so every report says which one made the plan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from tasks.errors import ForgeflowError, InfeasibleError


class NoPlanError(ForgeflowError):
    """No plan fits the target (memory, budget)."""


@dataclass(frozen=True)
class ChainPlan:
    planner: str  # "joint" | "uniform-fallback"
    k: int
    stages: tuple[tuple[str, ...], ...]  # unit names per stage, pipeline order
    bits: Mapping[str, int]  # unit name -> width (32 = float)
    bottleneck_ms: float
    lower_bound_ms: float
    ratio: float
    status: str
    stage_ms: tuple[float, ...]  # predicted total per stage (compute + transfers) on the target
    stage_memory: tuple[float, ...]
    sensitivity: float
    budget: float | None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [list(s) for s in self.stages]
        d["bits"] = dict(self.bits)
        d["ratio"] = self.ratio if math.isfinite(self.ratio) else None
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ChainPlan":
        d = dict(d)
        d["stages"] = tuple(tuple(s) for s in d["stages"])
        d["stage_ms"], d["stage_memory"] = tuple(d["stage_ms"]), tuple(d["stage_memory"])
        d["ratio"] = math.inf if d["ratio"] is None else d["ratio"]
        return cls(**d)


def _joint_solver():
    try:
        from tasks.plan import solve_instance  # issue 18's joint planner, when installed
    except ImportError:
        return None
    return solve_instance


def plan_instance(instance: Mapping[str, Any], time_limit: float = 10.0) -> ChainPlan:
    solver = _joint_solver()
    if solver is not None:
        return _from_joint(solver(instance, time_limit=time_limit), instance)
    return uniform_fallback(instance, time_limit)


def _from_joint(result: Mapping[str, Any], instance: Mapping[str, Any]) -> ChainPlan:  # pragma: no cover - adapter
    raise NotImplementedError


def _option(node: Mapping[str, Any], bits: int) -> tuple[float, float, float]:
    if bits >= 32:
        return float(node["fpgaLatency"]), float(node["size"]), 0.0
    for o in node.get("bitOptions", []):
        if int(o["bits"]) == bits:
            return float(o["latency"]), float(o["size"]), float(o["sensitivity"])
    raise KeyError(bits)


def uniform_fallback(instance: Mapping[str, Any], time_limit: float = 10.0) -> ChainPlan:
    from tasks.partition.problem import PartitionProblem
    from tasks.partition.solve import SolveConfig, partition

    nodes = instance["nodes"]
    ids = [n["id"] for n in nodes]
    index = {n: i for i, n in enumerate(ids)}
    cost = [0.0] * len(ids)
    edges = []
    for e in instance["edges"]:
        edges.append((index[e["sourceId"]], index[e["destId"]]))
        cost[index[e["sourceId"]]] = max(cost[index[e["sourceId"]]], float(e["cost"]))
    widths = sorted({32} | {int(o["bits"]) for n in nodes for o in n.get("bitOptions", [])})
    budget = instance.get("sensitivityBudget")
    cap = instance.get("maxSizePerFPGA")
    k = int(instance["maxFPGAs"])
    best = None
    reasons = []
    for b in widths:
        opts = [_option(n, b) for n in nodes]
        sens = sum(o[2] for o in opts)
        if budget is not None and sens > budget * (1 + 1e-9):
            reasons.append(f"{b}-bit sensitivity {sens:.3g} > budget {budget:.3g}")
            continue
        prob = PartitionProblem.from_arrays([o[0] for o in opts], [o[1] for o in opts], cost, edges, k,
                                            mem_cap=cap, node_ids=ids, name=instance.get("name", "chain"))
        try:
            res = partition(prob, SolveConfig(time_limit=time_limit, restarts=1))
        except InfeasibleError:
            reasons.append(f"{b}-bit weights do not fit {k} x {cap:g} bytes")
            continue
        key = (res.bottleneck, -res.lower_bound.value)
        if best is None or key < best[0]:
            best = (key, b, res, sens)
    if best is None:
        raise NoPlanError(f"no plan fits target {instance.get('name', '')}: " + "; ".join(reasons))
    _, b, res, sens = best
    plan = res.plan
    return ChainPlan(planner="uniform-fallback", k=k, stages=tuple(tuple(s) for s in plan.stages if s),
                     bits={i: b for i in ids}, bottleneck_ms=float(res.bottleneck),
                     lower_bound_ms=float(res.lower_bound.value), ratio=float(res.ratio), status=res.status.value,
                     stage_ms=tuple(t for t, s in zip(plan.stage_totals, plan.stages) if s),
                     stage_memory=tuple(m for m, s in zip(plan.memory, plan.stages) if s),
                     sensitivity=float(sens), budget=None if budget is None else float(budget))


def host_stage_ms(plan: ChainPlan, instance_host: Mapping[str, Any]) -> tuple[float, ...]:
    """Per-stage time the plan's stages take on the profiling host (speed 1, no width speed-up): the figure a
    pipeline run on this host is compared with. ``instance_host`` is the instance built for the host."""
    nodes = {n["id"]: n for n in instance_host["nodes"]}
    cost = {e["sourceId"]: float(e["cost"]) for e in instance_host["edges"]}
    out = []
    for s, stage in enumerate(plan.stages):
        t = sum(float(nodes[u]["fpgaLatency"]) for u in stage)
        if s > 0:
            t += cost[plan.stages[s - 1][-1]]
        if s < len(plan.stages) - 1:
            t += cost[stage[-1]]
        out.append(t)
    return tuple(out)
