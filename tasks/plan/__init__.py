"""Joint deployment plans: pipeline stage placement and per-layer bit widths for a declared hardware target.

Public API (stable; `forgeflow plan` and `forgeflow optimize` are built on it)::

    from forgeflow.tasks.plan import load_target, build_instance, solve_plan, PlanInstance, PlanResult
    target = load_target("deploy/targets/edge_npu_4x.yaml")
    instance = build_instance(graph, sensitivities, target)      # or PlanInstance.from_json(path)
    result = solve_plan(instance, time_limit=60)                  # result.to_plan_json() is PLAN.json
"""

from forgeflow.tasks.plan.instance import PlanInstance, build_instance  # noqa: F401
from forgeflow.tasks.plan.result import PlanResult  # noqa: F401
from forgeflow.tasks.plan.solve import solve_plan  # noqa: F401
from forgeflow.tasks.plan.target import HardwareTarget, load_target  # noqa: F401
