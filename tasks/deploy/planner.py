"""Stages and bit widths of a chain instance, with a certified bound: the one call `optimize` makes to plan.

``plan_instance`` hands the instance to the joint placement-and-precision planner (``tasks.plan.solve_plan``: stage
and width per unit together, memory per device, sensitivity budget, HiGHS lower bound) and keeps what a deployment
needs as a ``ChainPlan``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from forgeflow.tasks.errors import ForgeflowError, InfeasibleError


class NoPlanError(ForgeflowError):
    """No plan fits the target (memory, budget)."""


@dataclass(frozen=True)
class ChainPlan:
    planner: str  # "joint"
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
    baselines: Mapping[str, float | None] = field(default_factory=dict)  # e.g. uniform-8 bottleneck (None: no plan)
    lower_bound_method: str = ""
    devices: tuple[int, ...] = ()  # the target device of each stage (empty stages of the solver dropped)

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
        d["devices"] = tuple(d.get("devices", ()))
        return cls(**d)


def plan_instance(instance: Mapping[str, Any], time_limit: float = 10.0) -> ChainPlan:
    """Solve ``instance`` (the joint JSON form) with the joint planner; ``NoPlanError`` when no plan exists."""
    from forgeflow.tasks.plan import PlanInstance, solve_plan

    inst = PlanInstance.from_json_dict(dict(instance), name=str(instance.get("name", "chain")))
    try:
        res = solve_plan(inst, time_limit=time_limit)
    except InfeasibleError as exc:
        raise NoPlanError(str(exc)) from None
    pj = res.to_plan_json()
    p = res.plan
    keep = [s for s in range(len(p.stages)) if p.stages[s]]
    return ChainPlan(planner="joint", k=len(keep), stages=tuple(tuple(p.stages[s]) for s in keep),
                     bits={str(i): int(b) for i, b in pj["bits"].items()}, bottleneck_ms=float(p.bottleneck),
                     lower_bound_ms=float(res.lower_bound.value), ratio=float(res.ratio), status=res.status.value,
                     stage_ms=tuple(float(p.stage_totals[s]) for s in keep),
                     stage_memory=tuple(float(p.memory[s]) for s in keep), sensitivity=float(p.sensitivity),
                     budget=None if res.budget is None else float(res.budget),
                     baselines={str(m): v for m, v in pj.get("baselines", {}).items()},
                     lower_bound_method=str(pj.get("lower_bound_method")), devices=tuple(keep))


def host_stage_ms(plan: ChainPlan, unit_ms: Mapping[str, float], out_ms: Mapping[str, float]) -> tuple[float, ...]:
    """Per-stage time of the plan's stages on the profiling host, the figure `forgeflow pipeline run` is compared
    with: each stage's units as the host runs them (``unit_ms``) plus its boundary transfers (``out_ms`` of the
    unit whose output crosses, once sent and once received)."""
    out = []
    for s, stage in enumerate(plan.stages):
        t = sum(float(unit_ms[u]) for u in stage)
        if s > 0:
            t += out_ms[plan.stages[s - 1][-1]]
        if s < len(plan.stages) - 1:
            t += out_ms[stage[-1]]
        out.append(t)
    return tuple(out)
