"""The independent validator of joint plans: stages, options, memory and budget, recomputed from the instance.

A joint plan is ``assignment[i]`` (0-based stage of node i) and ``choice[i]`` (its option index, 0 = float). Stage s
costs the chosen options' times on device s plus the transfers of the msr cost model (``tasks.partition.cost``,
which shares no code with any solver); its memory is the chosen options' sizes. Nothing is stored before this
module has accepted the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.partition.cost import MEMORY_RTOL, InvalidPlanError, StageLoads, stage_loads, validate_plan
from forgeflow.tasks.plan.instance import PlanInstance

#: relative slack on the sensitivity budget (sensitivities are floats read from JSON)
BUDGET_RTOL = 1e-9


@dataclass(frozen=True)
class JointLoads(StageLoads):
    """A joint plan's per-stage loads (``StageLoads``) and its total sensitivity."""

    sensitivity: float


def joint_loads(inst: PlanInstance, assignment: np.ndarray, choice: np.ndarray) -> JointLoads:
    """Per-stage loads of a plan (no checks; see :func:`validate_joint`)."""
    a = np.asarray(assignment, dtype=np.int64)
    ch = np.asarray(choice, dtype=np.int64)
    k = inst.k
    rows = np.arange(inst.n)
    t = inst.time[a, rows, ch]
    compute = np.bincount(a, weights=t, minlength=k).astype(float)
    memory = np.bincount(a, weights=inst.size[rows, ch], minlength=k).astype(float)
    comm = stage_loads(inst.base, a, k)
    return JointLoads(compute, comm.comm_in, comm.comm_out, memory, float(inst.sens[rows, ch].sum()))


def validate_joint(inst: PlanInstance, assignment, choice) -> JointLoads:
    """Check a plan against the instance and return its recomputed loads; raise InvalidPlanError naming the first
    broken rule (shape, option, ordering, co-location, a stage over its device's memory, the budget)."""
    ch = np.asarray(choice)
    if ch.shape != (inst.n,):
        raise InvalidPlanError(f"plan chooses options for {ch.shape} nodes, the instance has {inst.n}")
    if ch.size and not np.issubdtype(ch.dtype, np.integer):
        raise InvalidPlanError("option choices must be integers")
    ch = ch.astype(np.int64)
    bad = np.flatnonzero((ch < 0) | (ch >= inst.bits.shape[1]))
    if not bad.size:
        bad = np.flatnonzero(~inst.valid[np.arange(inst.n), ch])
    if bad.size:
        i = int(bad[0])
        raise InvalidPlanError(f"node {inst.raw_ids[i]!r} is given option {int(ch[i])}, which it does not have")
    validate_plan(inst.base.with_mem_cap(None), assignment, inst.k)  # shape, range, ordering, co-location
    loads = joint_loads(inst, assignment, ch)
    for s, cap in enumerate(inst.mem_caps):
        if cap is not None and loads.memory[s] > cap * (1 + MEMORY_RTOL):
            raise InvalidPlanError(f"stage {s} holds {loads.memory[s]:g} bytes, above its device's memory {cap:g}")
    if inst.budget is not None and loads.sensitivity > inst.budget * (1 + BUDGET_RTOL) + 1e-12:
        raise InvalidPlanError(f"total sensitivity {loads.sensitivity:g} exceeds the budget {inst.budget:g}")
    return loads
