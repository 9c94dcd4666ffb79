"""Optimal bit allocation: the HAWQ-V3 ILP, generalised to several widths and any combination of budgets, in HiGHS.

Tied layers are merged into one decision (they share a width), so the model has one binary ``y[g, k]`` per tie group
``g`` and admissible width ``bits[k]``:

    minimise    sum_{g,k} (sum_{i in g} cost[i, k]) y[g, k]
    subject to  sum_k y[g, k] = 1                                    for every group g
                sum_{g,k} (sum_{i in g} R[i, k]) y[g, k] <= budget_R  for every budget R set (size, BOPs, latency)
                y binary; y[g, k] = 0 where a member forbids width k or a pin fixes another width.

Budget rows are divided by their budget, so HiGHS's absolute feasibility tolerance (1e-7) acts as a relative one;
the plan is then checked against the unscaled budgets. The relative MIP gap is 0, so an ``OPTIMAL`` result is the
proven optimum (up to HiGHS's tolerances) and ``dual_bound`` is HiGHS's proven lower bound on the objective.

An infeasible budget raises ``BudgetInfeasibleError`` stating the smallest achievable value of that resource; when
each budget is achievable alone but not together, the message gives, for each budget, its smallest value under the
other budgets.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from forgeflow.tasks.quantize.errors import BudgetInfeasibleError, QuantizeError
from forgeflow.tasks.quantize.problem import RESOURCE_WORDS, RESOURCES, AllocationProblem
from forgeflow.tasks.solver import (FEASIBILITY_TOL, INF, LinearModel, SolveOutcome, SolverOptions, SolveStatus, relative_gap,
                          solve)


@dataclass(frozen=True)
class Allocation:
    """A solved allocation: the plan (layer -> bits, 32 = float), its objective, HiGHS's proven lower bound on the
    optimum, how the solve ended, its wall time (s), and the plan's resource totals (bytes, BOPs, ms)."""

    status: SolveStatus
    bits: Mapping[str, int]
    objective: float
    dual_bound: float
    gap: float
    seconds: float
    totals: Mapping[str, float]
    budgets: Mapping[str, float]
    detail: Mapping[str, Any] = field(default_factory=dict)

    def bits_in_order(self, layers) -> list[int]:
        return [int(self.bits[x]) for x in layers]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "bits": dict(self.bits), "objective": self.objective,
                "dual_bound": self.dual_bound, "gap": self.gap, "seconds": self.seconds,
                "totals": dict(self.totals), "budgets": dict(self.budgets), "detail": dict(self.detail)}


@dataclass(frozen=True)
class _Grouped:
    groups: list[list[int]]
    cols: list[np.ndarray]  # admissible width indices per group
    cost: list[np.ndarray]  # summed over members, per admissible width
    res: dict[str, list[np.ndarray]]


def _group(problem: AllocationProblem) -> _Grouped:
    mask = problem.allowed_mask()
    col_of = {b: k for k, b in enumerate(problem.bits)}
    index = {x: i for i, x in enumerate(problem.layers)}
    pin_of = {index[x]: col_of[b] for x, b in problem.pinned.items()}
    groups = problem.groups()
    cost = np.asarray(problem.cost, dtype=float)
    tables = {r: np.asarray(problem.table(r), dtype=float) for r in RESOURCES if problem.table(r) is not None}
    cols, gcost, gres = [], [], {r: [] for r in tables}
    for g in groups:
        ok = mask[g].all(axis=0)
        pins = {pin_of[i] for i in g if i in pin_of}
        names = ", ".join(problem.layers[i] for i in g)
        if len(pins) > 1:
            raise QuantizeError(f"tied layers ({names}) are pinned to different widths "
                                f"({', '.join(str(problem.bits[k]) for k in sorted(pins))})")
        if pins:
            k = pins.pop()
            if not ok[k]:
                raise QuantizeError(f"layer(s) {names} pinned to {problem.bits[k]} bits, which a tied layer does not allow")
            ok = np.zeros_like(ok)
            ok[k] = True
        if not ok.any():
            raise QuantizeError(f"tied layers ({names}) have no bit width in common")
        ks = np.flatnonzero(ok)
        cols.append(ks)
        gcost.append(cost[g][:, ks].sum(axis=0))
        for r, t in tables.items():
            gres[r].append(t[g][:, ks].sum(axis=0))
    return _Grouped(groups, cols, gcost, gres)


def smallest_achievable(problem: AllocationProblem, resource: str) -> float:
    """The smallest total of ``resource`` any plan reaches under the pins and ties (ignoring budgets)."""
    problem.validate()
    grouped = _group(problem)
    if resource not in grouped.res:
        raise QuantizeError(f"the problem has no {RESOURCE_WORDS[resource][0]} table")
    return float(sum(v.min() for v in grouped.res[resource])) + float(problem.base.get(resource, 0.0))


@dataclass(frozen=True)
class _Solved:
    """One solve of the grouped model: the solver's outcome, and for each column its group and width index."""

    outcome: SolveOutcome
    var_group: np.ndarray
    var_col: np.ndarray
    scale: float  # the objective was divided by this before solving


def _solve_grouped(problem: AllocationProblem, grouped: _Grouped, objective: np.ndarray | None,
                   budgets: Mapping[str, float], time_limit: float) -> _Solved:
    """Build and solve the model. ``objective`` replaces the cost (a flat vector over all columns) when set."""
    var_group = np.concatenate([np.full(len(ks), g) for g, ks in enumerate(grouped.cols)])
    var_col = np.concatenate(grouped.cols)
    nvar = len(var_group)
    if objective is None:
        # subtract each group's smallest cost (a constant, since exactly one width is picked) for conditioning
        mins = np.array([c.min() for c in grouped.cost])
        c = np.concatenate([gc - m for gc, m in zip(grouped.cost, mins)])
        offset = float(mins.sum())
    else:
        c, offset = np.asarray(objective, dtype=float), 0.0
    # costs (trace x perturbation) can be ~1e-6: scale them to O(1) so HiGHS's absolute tolerances do not hide
    # real differences between plans (the reported objective is recomputed from the plan, unscaled)
    scale = float(np.abs(c).max()) if c.size and np.abs(c).max() > 0 else 1.0
    model = LinearModel()
    cols = model.add_vars(nvar, 0.0, 1.0, c / scale, integer=True)
    model.offset = offset / scale
    for g in range(len(grouped.cols)):  # exactly one width per group
        members = cols[var_group == g]
        model.add_row(members, np.ones(len(members)), 1.0, 1.0)
    # budget rows: sum R y <= budget - base, divided by the budget so HiGHS's tolerance is relative
    for r in (r for r in RESOURCES if r in budgets):
        b = max(float(budgets[r]), 1e-300)
        room = float(budgets[r]) - float(problem.base.get(r, 0.0))
        model.add_row(cols, np.concatenate(grouped.res[r]) / b, -INF, room / b)
    # HiGHS compares objective improvements against the MIP feasibility tolerance (default 1e-6): plans whose
    # costs differ by less were treated as equal (found by the brute-force property test)
    options = SolverOptions(time_limit=time_limit, mip_rel_gap=0.0, mip_abs_gap=1e-12,
                            mip_feasibility_tolerance=1e-10)
    return _Solved(solve(model, options), var_group, var_col, scale)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _raise_infeasible(problem: AllocationProblem, grouped: _Grouped, time_limit: float) -> None:
    budgets = dict(problem.budgets)
    for r in RESOURCES:
        if r in budgets:
            lo = float(sum(v.min() for v in grouped.res[r])) + float(problem.base.get(r, 0.0))
            if lo > budgets[r] * (1 + FEASIBILITY_TOL) + 1e-12:
                word, unit = RESOURCE_WORDS[r]
                extra = " with the pinned layers" if problem.pinned else ""
                raise BudgetInfeasibleError(
                    f"{word} budget {_fmt(budgets[r])} {unit} is infeasible: the smallest achievable {word}{extra} "
                    f"is {_fmt(lo)} {unit}", r, budgets[r], lo)
    # every budget is reachable alone: report each one's smallest value under the others
    parts, first = [], None
    for r in RESOURCES:
        if r not in budgets:
            continue
        others = {q: v for q, v in budgets.items() if q != r}
        x = _solve_grouped(problem, grouped, np.concatenate(grouped.res[r]), others, time_limit).outcome.solution
        word, unit = RESOURCE_WORDS[r]
        if x is None:
            parts.append(f"{word} cannot be evaluated under the other budgets")
            continue
        lo = float(np.dot(np.concatenate(grouped.res[r]), np.round(x))) + float(problem.base.get(r, 0.0))
        parts.append(f"under the other budgets the smallest achievable {word} is {_fmt(lo)} {unit} "
                     f"(budget {_fmt(budgets[r])})")
        first = first or (r, budgets[r], lo)
    r, b, lo = first if first else (next(iter(budgets)), next(iter(budgets.values())), math.nan)
    raise BudgetInfeasibleError("the budgets cannot be met together: " + "; ".join(parts), r, b, lo)


def solve_allocation(problem: AllocationProblem, time_limit: float = 60.0) -> Allocation:
    """The plan minimising the summed cost under every budget set; raises BudgetInfeasibleError if none exists.

    A time-limited solve returns its best plan with status TIME_LIMIT and HiGHS's dual bound.
    """
    t0 = time.perf_counter()
    problem.validate()
    grouped = _group(problem)
    solved = _solve_grouped(problem, grouped, None, problem.budgets, time_limit)
    out = solved.outcome
    if out.solution is None:
        if out.status is SolveStatus.INFEASIBLE or "nfeasible" in out.detail.get("highs_status", ""):
            _raise_infeasible(problem, grouped, time_limit)
        raise QuantizeError(f"HiGHS ended with {out.detail.get('highs_status', out.status.value)} and no plan")
    chosen = np.flatnonzero(np.round(out.solution) > 0.5)
    bits: dict[str, int] = {}
    for j in chosen:
        for i in grouped.groups[int(solved.var_group[j])]:
            bits[problem.layers[i]] = int(problem.bits[int(solved.var_col[j])])
    if len(bits) != problem.n:
        raise QuantizeError("HiGHS returned a plan that does not pick one width per layer")
    totals = problem.plan_totals(bits)
    if not problem.plan_is_admissible(bits):
        raise QuantizeError(f"HiGHS's plan exceeds a budget beyond tolerance: {totals}")
    objective = totals["objective"]
    dual = min(out.dual_bound * solved.scale, objective)
    return Allocation(
        status=out.status, bits=bits, objective=objective, dual_bound=dual, gap=relative_gap(objective, dual),
        seconds=time.perf_counter() - t0, totals={r: totals[r] for r in RESOURCES},
        budgets=dict(problem.budgets),
        detail={"groups": len(grouped.groups), "variables": int(len(solved.var_group)), **out.detail})
