"""Pareto sweep: solve the allocation at a series of budgets of one resource, fanned out over an executor.

``executor`` is anything with ``.submit(fn, *args)`` returning futures with ``.result()`` (a dask Client, a
``concurrent.futures`` pool) or None for serial. Budgets below the smallest achievable value are reported as
infeasible points (status + the smallest value), not raised, so one sweep always returns one point per budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from forgeflow.tasks.dask_fanout import SERIAL, fan_out
from forgeflow.tasks.quantize.errors import BudgetInfeasibleError
from forgeflow.tasks.quantize.ilp import Allocation, solve_allocation
from forgeflow.tasks.quantize.problem import RESOURCES, AllocationProblem
from forgeflow.tasks.solver import SolveStatus


@dataclass(frozen=True)
class ParetoPoint:
    """One budget of the sweep: the resource swept, the budget, and the allocation (None when infeasible, with
    ``smallest`` the smallest achievable value of the resource)."""

    resource: str
    budget: float
    status: SolveStatus
    allocation: Allocation | None
    smallest: float | None = None


def budget_grid(problem: AllocationProblem, resource: str, points: int, spacing: str = "geometric") -> list[float]:
    """``points`` budgets from the smallest to the largest achievable total of ``resource``, spaced evenly
    (``linear``) or by a constant ratio (``geometric``: denser at the small end, where plans differ most)."""
    table = np.where(problem.allowed_mask(), np.asarray(problem.table(resource), dtype=float), np.nan)
    base = float(problem.base.get(resource, 0.0))
    lo, hi = float(np.nanmin(table, axis=1).sum()) + base, float(np.nanmax(table, axis=1).sum()) + base
    if spacing == "geometric" and lo > 0:
        return [float(v) for v in np.geomspace(lo, hi, max(points, 2))]
    return [float(v) for v in np.linspace(lo, hi, max(points, 2))]


def _solve_point(problem: AllocationProblem, resource: str, budget: float, time_limit: float) -> ParetoPoint:
    try:
        a = solve_allocation(problem.with_budgets(**{resource: budget}), time_limit=time_limit)
        return ParetoPoint(resource, budget, a.status, a)
    except BudgetInfeasibleError as exc:
        return ParetoPoint(resource, budget, SolveStatus.INFEASIBLE, None, exc.smallest)


def pareto_sweep(problem: AllocationProblem, resource: str, budgets: Sequence[float], executor: Any = SERIAL,
                 time_limit: float = 60.0) -> list[ParetoPoint]:
    """One point per budget (in the given order); the other budgets of ``problem`` stay in force."""
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}")
    problem.validate()
    return fan_out(executor, _solve_point, [(problem, resource, float(b), time_limit) for b in budgets])
