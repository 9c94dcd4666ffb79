"""HiGHS models for pipeline partitioning, one function per formulation, and the solve wrapper.

All formulations work on must-share-a-stage groups (``tasks.partition.colocation``) and use cumulative stage
variables: ``x[g, s] = 1`` iff group g sits in stage <= s. Precedence g -> h is then ``x[g, s] >= x[h, s]`` (tight
and trivially totally unimodular), ``y[g, s] = x[g, s] - x[g, s-1]`` says "g is in stage s", and the transfer terms
of the cost model are linear lower bounds on 0/1 indicator variables:

* ``out[u, s] >= y[g(u), s] - x[t, s]`` for each target group t of u: u is in s and t comes after s, so u's output
  leaves stage s (paid once, however many targets are later);
* ``inn[u, s] >= y[t, s] - y[g(u), s]``: t is in s and u is not, so u sits earlier and s receives u's output once.

Every returned dual bound is HiGHS's proven ``mip_dual_bound`` (or the optimum), never a heuristic value.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import highspy
import numpy as np

from tasks.partition.colocation import Groups, must_share_groups
from tasks.partition.problem import PartitionProblem
from tasks.partition.status import Bound, SolveStatus

INF = highspy.kHighsInf


def shave_for_tolerance(value: float) -> float:
    """Lower a solver-proven bound by a relative 1e-7 and an absolute 1e-6 (ms) so that HiGHS's feasibility
    tolerances can never make a reported lower bound exceed the true optimum."""
    if not math.isfinite(value):
        return value
    return max(0.0, value - 1e-7 * abs(value) - 1e-6)


class LinearModel:
    """A small column/row builder that hands HiGHS one CSC matrix (much faster than per-row Python calls)."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.rows_lo: list[float] = []
        self.rows_hi: list[float] = []
        self._ri: list[int] = []
        self._ci: list[int] = []
        self._v: list[float] = []

    @property
    def num_cols(self) -> int:
        return len(self.cost)

    def add_var(self, lb: float = 0.0, ub: float = 1.0, cost: float = 0.0, integer: bool = False) -> int:
        self.cost.append(cost)
        self.lower.append(lb)
        self.upper.append(ub)
        self.integer.append(integer)
        return len(self.cost) - 1

    def add_row(self, cols, coefs, lo: float = -INF, hi: float = INF) -> int:
        r = len(self.rows_lo)
        self.rows_lo.append(lo)
        self.rows_hi.append(hi)
        for c, a in zip(cols, coefs):
            if a != 0.0:
                self._ri.append(r)
                self._ci.append(c)
                self._v.append(float(a))
        return r

    def to_highs(self, time_limit: float, *, mip_rel_gap: float = 1e-6, objective_bound: float | None = None,
                 extra_options: dict[str, Any] | None = None) -> highspy.Highs:
        n, m = len(self.cost), len(self.rows_lo)
        ri = np.asarray(self._ri, dtype=np.int64)
        ci = np.asarray(self._ci, dtype=np.int64)
        v = np.asarray(self._v, dtype=float)
        order = np.lexsort((ri, ci))
        ri, ci, v = ri[order], ci[order], v[order]
        start = np.zeros(n + 1, dtype=np.int64)
        np.add.at(start, ci + 1, 1)
        start = np.cumsum(start)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = m
        lp.col_cost_ = np.asarray(self.cost, dtype=float)
        lp.col_lower_ = np.asarray(self.lower, dtype=float)
        lp.col_upper_ = np.asarray(self.upper, dtype=float)
        lp.row_lower_ = np.asarray(self.rows_lo, dtype=float)
        lp.row_upper_ = np.asarray(self.rows_hi, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = ri
        lp.a_matrix_.value_ = v
        if any(self.integer):
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in self.integer]
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("random_seed", 0)
        h.setOptionValue("time_limit", float(max(time_limit, 0.01)))
        h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        if objective_bound is not None:
            h.setOptionValue("objective_bound", float(objective_bound))
        for key, val in (extra_options or {}).items():
            h.setOptionValue(key, val)
        h.passModel(lp)
        return h


@dataclass(frozen=True)
class MipOutcome:
    """How one HiGHS solve of a minimisation ended: status, best objective found (inf if none), proven dual bound
    (``-inf`` if nothing was proven; ``+inf`` if the model is infeasible), the column values of the incumbent."""

    status: SolveStatus
    objective: float
    dual_bound: float
    values: np.ndarray | None
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


def solve_model(model: LinearModel, time_limit: float, *, stop: Callable[[], bool] | None = None,
                **kw) -> MipOutcome:
    """Solve a minimisation model; map HiGHS's model status to SolveStatus and read its proven dual bound.

    ``stop`` is polled from HiGHS's MIP interrupt callback (a few times per second of branch and bound); when it
    returns True the solve ends early with status FEASIBLE and whatever it had proven so far."""
    t0 = time.perf_counter()
    try:
        h = model.to_highs(time_limit, **kw)
        if stop is not None:
            def interrupt(event) -> None:
                if stop():
                    event.interrupt()

            h.cbMipInterrupt.subscribe(interrupt)
        h.run()
    except Exception as exc:  # pragma: no cover - HiGHS internal failure is reported, not raised
        return MipOutcome(SolveStatus.ERROR, math.inf, -math.inf, None, time.perf_counter() - t0,
                          {"error": repr(exc)})
    seconds = time.perf_counter() - t0
    ms = h.getModelStatus()
    info = h.getInfo()
    is_mip = any(model.integer)
    has_sol = info.primal_solution_status == highspy.kSolutionStatusFeasible
    obj = float(info.objective_function_value) if has_sol else math.inf
    values = np.asarray(h.getSolution().col_value, dtype=float) if has_sol else None
    detail = {"highs_status": h.modelStatusToString(ms), "nodes": int(info.mip_node_count) if is_mip else 0}
    M = highspy.HighsModelStatus
    if ms == M.kOptimal:
        # HiGHS stops at mip_rel_gap; the proven bound is the dual bound, not the incumbent
        dual = min(float(info.mip_dual_bound), obj) if is_mip else obj
        return MipOutcome(SolveStatus.OPTIMAL, obj, dual, values, seconds, detail)
    if ms == M.kInfeasible:
        return MipOutcome(SolveStatus.INFEASIBLE, math.inf, math.inf, None, seconds, detail)
    if ms in (M.kTimeLimit, M.kInterrupt, M.kIterationLimit, M.kSolutionLimit, M.kObjectiveBound,
              M.kObjectiveTarget, M.kHighsInterrupt):
        # only a finite dual bound is taken as proven; infeasibility is believed only from the Infeasible status
        dual = float(info.mip_dual_bound) if is_mip else -math.inf
        status = SolveStatus.TIME_LIMIT if ms == M.kTimeLimit else SolveStatus.FEASIBLE
        return MipOutcome(status, obj, dual if math.isfinite(dual) else -math.inf, values, seconds, detail)
    detail["error"] = h.modelStatusToString(ms)
    return MipOutcome(SolveStatus.ERROR, obj, -math.inf, values, seconds, detail)


# --------------------------------------------------------------------------- formulation: one convex stage
def build_cheapest_stage_model(groups: Groups, anchor: int, mem_cap: float | None = None) -> LinearModel:
    """The cheapest stage that contains group ``anchor``: minimise stage cost over all convex sets S of groups
    with anchor in S. Any plan's stage holding ``anchor`` is such a set, so the optimum (or any dual bound) is a
    lower bound on the bottleneck for every k. A convex set is the difference of two down-sets ``b - a`` with
    a <= b (a: strictly before S, b: before or in S)."""
    mdl = LinearModel()
    G = groups.count
    a = [mdl.add_var(0, 1, integer=True) for _ in range(G)]
    b = [mdl.add_var(0, 1, integer=True) for _ in range(G)]
    mdl.lower[b[anchor]] = 1.0
    mdl.upper[a[anchor]] = 0.0
    for g in range(G):
        mdl.add_row([b[g], a[g]], [1.0, -1.0], lo=0.0)  # a <= b
        mdl.cost[b[g]] += groups.work[g]
        mdl.cost[a[g]] -= groups.work[g]
    for g, h in groups.edges:
        mdl.add_row([a[g], a[h]], [1.0, -1.0], lo=0.0)
        mdl.add_row([b[g], b[h]], [1.0, -1.0], lo=0.0)
    if mem_cap is not None:
        mdl.add_row(b + a, list(groups.size) + list(-groups.size), hi=float(mem_cap))
    c = groups.problem.c
    for u, targets in groups.senders:
        gu = int(groups.group_of[u])
        out = mdl.add_var(0, 1, cost=float(c[u]))
        inn = mdl.add_var(0, 1, cost=float(c[u]))
        for t in targets:
            # u in S and t after S:  (b_gu - a_gu) - b_t <= out
            mdl.add_row([out, b[gu], a[gu], b[t]], [1.0, -1.0, 1.0, 1.0], lo=0.0)
            # t in S and u not in S:  (b_t - a_t) - (b_gu - a_gu) <= inn
            mdl.add_row([inn, b[t], a[t], b[gu], a[gu]], [1.0, -1.0, 1.0, 1.0, -1.0], lo=0.0)
    return mdl


# --------------------------------------------------------------------------- formulation: k ordered stages
@dataclass(frozen=True)
class StageModel:
    """A k-stage model plus the column indices needed to read a plan back."""

    model: LinearModel
    x: np.ndarray  # (G, k) column index of x[g, s]; x[:, k-1] are fixed to 1
    bottleneck: int  # column of B


def build_stage_model(groups: Groups, k: int, *, bottleneck_cap: float | None = None,
                      bottleneck_floor: float = 0.0, mem_cap: float | None = None, symmetry: bool = False
                      ) -> StageModel:
    """Min-bottleneck model over k ordered stages (cumulative x formulation, see the module docstring).

    ``bottleneck_cap`` puts an upper bound on B (bottleneck guessing: if the model is infeasible, the optimum
    exceeds the cap). It also tightens the model: a group whose ancestors' work exceeds (s+1) * cap cannot sit in
    stage <= s, and one whose descendants' work exceeds (k - s) * cap cannot sit in stage >= s.
    ``bottleneck_floor`` is a lower bound on B already proven elsewhere (it strengthens the LP relaxation).
    ``symmetry`` adds binary "stage used" indicators with used[s] >= used[s+1]: empty stages can always move to
    the end without breaking precedence, so only plans whose used stages come first need to be searched. Off by
    default: measured on InceptionV3 at k=6 it turns an 18 s proof of optimality into a 40 s time-out, because
    HiGHS's own symmetry detection and the cap-driven fixings already prune those plans.
    """
    mdl = LinearModel()
    G = groups.count
    k = int(k)
    B = mdl.add_var(float(max(bottleneck_floor, 0.0)), INF if bottleneck_cap is None else float(bottleneck_cap),
                    cost=1.0)
    x = np.empty((G, k), dtype=np.int64)
    earliest = np.zeros(G, dtype=np.int64)
    latest = np.full(G, k - 1, dtype=np.int64)
    if bottleneck_cap is not None and bottleneck_cap > 0:
        cap = float(bottleneck_cap)
        work = groups.work
        for g in range(G):
            anc_w = work[g] + sum(work[h] for h in _bits(groups.ancestors[g]))
            desc_w = work[g] + sum(work[h] for h in _bits(groups.descendants[g]))
            # stages 0..s hold g and its ancestors: (s+1) * cap >= anc_w
            earliest[g] = max(0, math.ceil(anc_w / cap - 1e-9) - 1)
            latest[g] = min(k - 1, k - math.ceil(desc_w / cap - 1e-9))
    for g in range(G):
        for s in range(k):
            if s == k - 1:
                x[g, s] = mdl.add_var(1.0, 1.0)
            else:
                lo = 1.0 if s >= latest[g] else 0.0
                hi = 0.0 if s < earliest[g] else 1.0
                if lo > hi:  # the cap is provably too small: an empty row range makes the model infeasible
                    mdl.add_row([B], [1.0], lo=1.0, hi=0.0)
                    lo, hi = 0.0, 1.0
                x[g, s] = mdl.add_var(lo, hi, integer=True)
            if s > 0:
                mdl.add_row([x[g, s], x[g, s - 1]], [1.0, -1.0], lo=0.0)
    for g, h in groups.edges:
        for s in range(k - 1):
            mdl.add_row([x[g, s], x[h, s]], [1.0, -1.0], lo=0.0)

    def y_terms(g: int, s: int, coef: float = 1.0) -> tuple[list[int], list[float]]:
        if s == 0:
            return [int(x[g, 0])], [coef]
        return [int(x[g, s]), int(x[g, s - 1])], [coef, -coef]

    load_cols: list[list[int]] = [[] for _ in range(k)]
    load_coefs: list[list[float]] = [[] for _ in range(k)]
    for s in range(k):
        for g in range(G):
            cols, coefs = y_terms(g, s, float(groups.work[g]))
            load_cols[s] += cols
            load_coefs[s] += coefs
    c = groups.problem.c
    for u, targets in groups.senders:
        gu = int(groups.group_of[u])
        for s in range(k):
            if s < k - 1:
                out = mdl.add_var(0, 1)
                for t in targets:
                    cols, coefs = y_terms(gu, s)
                    mdl.add_row([out] + cols + [int(x[t, s])], [1.0] + [-a for a in coefs] + [1.0], lo=0.0)
                load_cols[s].append(out)
                load_coefs[s].append(float(c[u]))
            if s > 0:
                inn = mdl.add_var(0, 1)
                for t in targets:
                    ct, at = y_terms(t, s)
                    cu, au = y_terms(gu, s)
                    mdl.add_row([inn] + ct + cu, [1.0] + [-a for a in at] + au, lo=0.0)
                load_cols[s].append(inn)
                load_coefs[s].append(float(c[u]))
    for s in range(k):
        mdl.add_row(load_cols[s] + [B], load_coefs[s] + [-1.0], hi=0.0)
    if mem_cap is not None:
        for s in range(k):
            cols: list[int] = []
            coefs: list[float] = []
            for g in range(G):
                cc, aa = y_terms(g, s, float(groups.size[g]))
                cols += cc
                coefs += aa
            mdl.add_row(cols, coefs, hi=float(mem_cap))
    if symmetry and k > 1:
        used = [mdl.add_var(0, 1, integer=True) for _ in range(k)]
        for s in range(k):
            every_cols: list[int] = []
            every_coefs: list[float] = []
            for g in range(G):
                cols, coefs = y_terms(g, s)
                mdl.add_row([used[s]] + cols, [1.0] + [-a for a in coefs], lo=0.0)  # g in s => s used
                every_cols += cols
                every_coefs += coefs
            mdl.add_row(every_cols + [used[s]], every_coefs + [-1.0], lo=0.0)  # s used => some group in s
            if s > 0:
                mdl.add_row([used[s - 1], used[s]], [1.0, -1.0], lo=0.0)
    return StageModel(mdl, x, B)


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def stages_from_values(sm: StageModel, groups: Groups, values: np.ndarray) -> np.ndarray:
    """Node -> stage index from a solution of a StageModel."""
    xv = values[sm.x] > 0.5
    stage_of_group = np.argmax(xv, axis=1)
    return stage_of_group[groups.group_of].astype(np.int64)


def solve_exact_mip(problem: PartitionProblem, time_limit: float, *, upper_bound: float | None = None,
                    floor: float | None = None) -> tuple[np.ndarray | None, Bound, SolveStatus]:
    """Solve the k-stage model with HiGHS: the best assignment found (node -> stage index, or None), the proven
    lower bound on the optimal bottleneck (HiGHS's dual bound), and how the solve ended. Meant for small graphs;
    on large ones it returns whatever it proved within ``time_limit`` seconds.

    ``upper_bound`` caps B (a known plan's bottleneck: only better plans are searched; if none exists the status is
    INFEASIBLE and the bound is ``upper_bound``). ``floor`` is a lower bound proven elsewhere; by default the
    combinatorial one (total work / k, heaviest must-share group), which is free and tightens the relaxation.
    """
    t0 = time.perf_counter()
    groups = must_share_groups(problem)
    if floor is None:
        floor = max(float(problem.w.sum()) / problem.k, float(groups.work.max()) if groups.count else 0.0)
    if upper_bound is not None and floor >= upper_bound:
        return None, Bound(float(floor), "mip_direct", SolveStatus.INFEASIBLE, time.perf_counter() - t0,
                           {"reason": "floor above the upper bound"}), SolveStatus.INFEASIBLE
    sm = build_stage_model(groups, problem.k, mem_cap=problem.mem_cap, bottleneck_cap=upper_bound,
                           bottleneck_floor=floor)
    res = solve_model(sm.model, time_limit)
    assignment = stages_from_values(sm, groups, res.values) if res.values is not None else None
    seconds = time.perf_counter() - t0
    if res.status == SolveStatus.INFEASIBLE:
        # no plan at all (memory), or none with bottleneck <= upper_bound: either way the optimum exceeds the cap
        value = float(upper_bound) if upper_bound is not None else math.inf
        return None, Bound(value, "mip_direct", SolveStatus.INFEASIBLE, seconds, res.detail), SolveStatus.INFEASIBLE
    value = shave_for_tolerance(max(res.dual_bound, floor)) if math.isfinite(res.dual_bound) else float(floor)
    detail = dict(res.detail, objective=res.objective)
    return assignment, Bound(value, "mip_direct", res.status, seconds, detail), res.status
