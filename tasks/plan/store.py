"""Solve a joint instance stored in the catalog and write the certified plan (and its budget front) back.

Tables written under the run's id (declared in ``catalog/tables/plan.py``): ``plan_results``, ``plan_choices``,
``plan_baselines`` and, for a sweep, ``plan_fronts``; plus the plan's PNG. Every plan was accepted by the
independent validator (``JointPlan.checked``) inside the solver; the stored plan is re-checked here once more
before the first write.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from forgeflow.tasks.plan.instance import PlanInstance
from forgeflow.tasks.plan.plot import plan_png
from forgeflow.tasks.plan.result import PlanResult
from forgeflow.tasks.plan.solve import solve_plan, sweep_budgets
from forgeflow.tasks.plan.validate import validate_joint


def put_instance(cat, run_id: str, inst: PlanInstance) -> str:
    """Store the instance (the documented JSON form) as a catalog object; return its key."""
    data = json.dumps(inst.to_json_dict(), sort_keys=True).encode()
    return cat.put_object(data, suffix=".json", run_id=run_id, description=f"joint plan instance {inst.name}",
                          kind="instance")


def get_instance(cat, key: str, name: str) -> PlanInstance:
    return PlanInstance.from_json_dict(json.loads(cat.get_object(key)), name=name)


def write_plan(cat, run_id: str, inst: PlanInstance, result: PlanResult) -> dict[str, Any]:
    validate_joint(inst, np.asarray(result.plan.assignment), np.asarray(result.plan.choice))
    result_id = uuid.uuid4().hex
    files = {name: cat.append(name, rows, run_id=run_id, description=f"{name} of {inst.name}, k={inst.k}")
             for name, rows in result.to_arrow(inst, result_id).items()}
    plot = cat.put_object(plan_png(result), suffix=".png", run_id=run_id, kind="plot",
                          description=f"joint plan of {inst.name}, k={inst.k}")
    return {"result_id": result_id, "files": files, "plot": plot}


def front_budgets(inst: PlanInstance, points: int) -> list[float]:
    """``points`` budgets evenly spaced above the least sensitive plan's, up to the uniform-4-bit sum (or the
    instance's budget if larger): with 4 points, 1/4, 1/2, 3/4 and all of that range."""
    lo, hi = inst.min_sensitivity(), max(inst.uniform4_sensitivity(), inst.budget or 0.0)
    if points <= 1 or hi <= lo:
        return [hi]
    return [lo + (hi - lo) * (i + 1) / points for i in range(points)]


def plan_catalog_instance(cat, run_id: str, instance_key: str, name: str, *, time_limit: float = 60.0,
                          front: int = 0, front_time_limit: float = 10.0, executor=None) -> dict[str, Any]:
    """Solve the stored instance, write the plan; with ``front`` > 0 also sweep that many budgets (fanned out on
    ``executor``) into ``plan_fronts``. Returns PLAN.json plus catalog keys and the front."""
    inst = get_instance(cat, instance_key, name)
    result = solve_plan(inst, time_limit)
    written = write_plan(cat, run_id, inst, result)
    out = {**result.to_plan_json(), **written, "instance_key": instance_key}
    if front > 0:
        budgets = front_budgets(inst, front)
        points = sweep_budgets(inst, budgets, front_time_limit, executor)
        front_id = uuid.uuid4().hex
        rows = []
        for b, r in zip(budgets, points):
            if isinstance(r, str):
                rows.append({"front_id": front_id, "result_id": None, "budget": float(b), "status": "infeasible",
                             "sensitivity": None, "bottleneck_ms": None, "lower_bound_ms": None, "ratio": None,
                             "message": r})
                continue
            w = write_plan(cat, run_id, inst.with_budget(b), r)
            rows.append({"front_id": front_id, "result_id": w["result_id"], "budget": float(b),
                         "status": r.status.value, "sensitivity": r.plan.sensitivity, "bottleneck_ms": r.bottleneck,
                         "lower_bound_ms": r.lower_bound.value, "ratio": r.ratio if math.isfinite(r.ratio) else None,
                         "message": ""})
        cat.append("plan_fronts", pa.Table.from_pylist(rows), run_id=run_id,
                   description=f"budget front of {inst.name}, k={inst.k}")
        out["front"] = [{k: v for k, v in row.items() if k != "front_id"} for row in rows]
        out["front_id"] = front_id
    return out
