"""The one HiGHS adapter every MIP in forgeflow goes through (partition, quantize, planning, verification).

Three pieces, modelled on linopy's ``constants.py`` and ``run_highs``:

* ``LinearModel`` builds a minimisation column by column and row by row and hands HiGHS one CSC matrix;
* ``SolverOptions`` holds the HiGHS options we set (time limit, threads, gaps, seed; output always off);
* ``solve`` runs HiGHS and returns a frozen ``SolveOutcome`` (status, objective, proven dual bound, relative gap,
  seconds, solution), mapping HiGHS's model status through the one table ``status_of``.

Statuses (``SolveStatus``, a string enum stored as-is in the catalog):

==================  =========================================================================================
HiGHS model status  SolveStatus
==================  =========================================================================================
Optimal             OPTIMAL: the gap asked for (``mip_rel_gap``, default ``OPTIMAL_RTOL``) is closed
Infeasible          INFEASIBLE: HiGHS proved no solution exists
TimeLimit,          TIME_LIMIT: a work limit stopped the solve; the incumbent (if any) and the dual bound are valid
IterationLimit
Interrupt,          FEASIBLE: stopped early on request (callback, objective bound/target, solution limit); what was
SolutionLimit,      found and proved is valid, optimality is not
ObjectiveBound,
ObjectiveTarget
anything else       FEASIBLE when HiGHS holds a feasible solution, else ERROR
==================  =========================================================================================

Tolerances are named here once; every module uses these names instead of retyping literals.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Mapping

import numpy as np

INF = math.inf  # HiGHS reads +-inf (kHighsInf) as "no bound"

#: relative slack when checking a memory capacity (``load <= cap * (1 + MEMORY_RTOL)``)
MEMORY_RTOL = 1e-9
#: a relative gap at or below this counts as optimal (HiGHS's ``mip_rel_gap`` by default, and our comparisons)
OPTIMAL_RTOL = 1e-6
#: THE "proven optimal" threshold of every plan forgeflow reports (partition, joint plan): a plan whose objective is
#: within this relative distance of its certified lower bound gets status OPTIMAL (``is_proven``), and solvers stop
#: working on an instance once its gap is this small. Not tighter than 1e-4: proven bounds are shaved
#: (``shave_bound``) and the published optima we compare against carry 6 significant digits.
PROVEN_RTOL = 1e-4
#: HiGHS's primal feasibility tolerance (its default): rows may be violated by this much, absolutely
FEASIBILITY_TOL = 1e-7
#: a proven bound is lowered by this relative and absolute amount before it is reported (``shave_bound``)
BOUND_RTOL = 1e-7
BOUND_ATOL = 1e-6


class SolveStatus(str, Enum):
    """How a solve ended (the one vocabulary shared by every solver and bound in forgeflow)."""

    OPTIMAL = "optimal"  # proven optimal (for a bound: the bound equals the optimum or closes the gap asked for)
    FEASIBLE = "feasible"  # a solution or a valid bound, without a proof of optimality
    TIME_LIMIT = "time_limit"  # stopped at a time or iteration limit; any value reported is still valid
    INFEASIBLE = "infeasible"  # proven that no solution exists
    NOT_RUN = "not_run"  # skipped (too large, no time left, not applicable)
    ERROR = "error"  # the solver failed; the value carries no information beyond the trivial bound


def relative_gap(objective: float, dual_bound: float) -> float:
    """HiGHS's relative MIP gap ``(objective - dual_bound) / |objective|``: 0 when they meet, inf when either is
    infinite (nothing found or nothing proven)."""
    if objective == dual_bound:
        return 0.0
    if not (math.isfinite(objective) and math.isfinite(dual_bound)):
        return math.inf
    return max(0.0, objective - dual_bound) / max(abs(objective), 1e-12)


def gap_closed(objective: float, dual_bound: float, rtol: float = OPTIMAL_RTOL) -> bool:
    """True when ``dual_bound`` proves ``objective`` optimal within ``rtol`` (relative)."""
    return relative_gap(objective, dual_bound) <= rtol


def is_proven(upper: float, lower: float) -> bool:
    """True when the certified ``lower`` bound proves a plan of objective ``upper`` optimal (``PROVEN_RTOL``, after
    the shaving every solver bound gets)."""
    return lower >= shave_bound(upper) * (1.0 - PROVEN_RTOL)


def shave_bound(value: float) -> float:
    """Lower a solver-proven lower bound by ``BOUND_RTOL`` (relative) and ``BOUND_ATOL`` (absolute), never below 0,
    so that HiGHS's feasibility tolerances can never make a reported bound exceed the true optimum."""
    if not math.isfinite(value):
        return value
    return max(0.0, value - BOUND_RTOL * abs(value) - BOUND_ATOL)


@dataclass(frozen=True)
class SolverOptions:
    """The HiGHS options forgeflow sets; output is always off. ``None`` leaves HiGHS's default.

    ``extra`` passes any further HiGHS option by name (e.g. ``{"mip_heuristic_effort": 0.3}``)."""

    time_limit: float = 60.0
    threads: int = 1
    mip_rel_gap: float = OPTIMAL_RTOL
    mip_abs_gap: float | None = None
    mip_feasibility_tolerance: float | None = None
    objective_bound: float | None = None
    random_seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, h) -> None:
        """Set these options on a ``highspy.Highs`` instance."""
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", int(self.threads))
        h.setOptionValue("random_seed", int(self.random_seed))
        h.setOptionValue("time_limit", float(max(self.time_limit, 0.01)))
        h.setOptionValue("mip_rel_gap", float(self.mip_rel_gap))
        for name in ("mip_abs_gap", "mip_feasibility_tolerance", "objective_bound"):
            value = getattr(self, name)
            if value is not None:
                h.setOptionValue(name, float(value))
        for key, value in self.extra.items():
            h.setOptionValue(key, value)


class LinearModel:
    """A minimisation ``min c.x + offset  s.t.  lo <= A x <= hi,  lb <= x <= ub`` built column by column and row by
    row, handed to HiGHS as one CSC matrix (much faster than per-row Python calls)."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.rows_lo: list[float] = []
        self.rows_hi: list[float] = []
        self.offset = 0.0
        self._ri: list[int] = []
        self._ci: list[int] = []
        self._v: list[float] = []

    @property
    def num_cols(self) -> int:
        return len(self.cost)

    @property
    def num_rows(self) -> int:
        return len(self.rows_lo)

    @property
    def is_mip(self) -> bool:
        return any(self.integer)

    def add_var(self, lb: float = 0.0, ub: float = 1.0, cost: float = 0.0, integer: bool = False) -> int:
        """Add one column; returns its index."""
        self.cost.append(float(cost))
        self.lower.append(float(lb))
        self.upper.append(float(ub))
        self.integer.append(bool(integer))
        return len(self.cost) - 1

    def add_vars(self, n: int, lb: float = 0.0, ub: float = 1.0, cost: Iterable[float] | float = 0.0,
                 integer: bool = False) -> np.ndarray:
        """Add ``n`` columns with the same bounds (``cost`` a scalar or one per column); returns their indices."""
        costs = np.broadcast_to(np.asarray(cost, dtype=float), (n,))
        first = self.num_cols
        self.cost.extend(costs.tolist())
        self.lower.extend([float(lb)] * n)
        self.upper.extend([float(ub)] * n)
        self.integer.extend([bool(integer)] * n)
        return np.arange(first, first + n)

    def add_row(self, cols, coefs, lo: float = -INF, hi: float = INF) -> int:
        """Add the row ``lo <= sum coefs[i] * x[cols[i]] <= hi`` (zero coefficients dropped); returns its index."""
        r = len(self.rows_lo)
        self.rows_lo.append(float(lo))
        self.rows_hi.append(float(hi))
        for c, a in zip(cols, coefs):
            if a != 0.0:
                self._ri.append(r)
                self._ci.append(int(c))
                self._v.append(float(a))
        return r

    def evaluate(self, values: np.ndarray) -> float:
        """The objective ``c.x + offset`` at ``values``."""
        return float(np.dot(np.asarray(self.cost, dtype=float), values)) + self.offset

    def to_highs(self, options: SolverOptions | None = None):
        """A ``highspy.Highs`` holding this model with ``options`` applied (ready to ``run``)."""
        import highspy

        n, m = len(self.cost), len(self.rows_lo)
        ri = np.asarray(self._ri, dtype=np.int64)
        ci = np.asarray(self._ci, dtype=np.int64)
        v = np.asarray(self._v, dtype=float)
        order = np.lexsort((ri, ci))
        ri, ci, v = ri[order], ci[order], v[order]
        start = np.zeros(n + 1, dtype=np.int64)
        np.add.at(start, ci + 1, 1)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = m
        lp.col_cost_ = np.asarray(self.cost, dtype=float)
        lp.offset_ = float(self.offset)
        lp.col_lower_ = np.asarray(self.lower, dtype=float)
        lp.col_upper_ = np.asarray(self.upper, dtype=float)
        lp.row_lower_ = np.asarray(self.rows_lo, dtype=float)
        lp.row_upper_ = np.asarray(self.rows_hi, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.cumsum(start)
        lp.a_matrix_.index_ = ri
        lp.a_matrix_.value_ = v
        if self.is_mip:
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in self.integer]
        h = highspy.Highs()
        (options or SolverOptions()).apply(h)
        h.passModel(lp)
        return h


@dataclass(frozen=True)
class SolveOutcome:
    """How one solve of a minimisation ended.

    ``objective`` is the incumbent's value (``inf`` if none), ``dual_bound`` HiGHS's proven lower bound on the
    optimum (``-inf`` if nothing was proven, ``+inf`` if the model is infeasible), ``gap`` their ``relative_gap``,
    ``solution`` the incumbent's column values (``None`` if none), ``detail`` the HiGHS status text and node count.
    """

    status: SolveStatus
    objective: float
    dual_bound: float
    gap: float
    seconds: float
    solution: np.ndarray | None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        return self.solution is not None


def _statuses() -> tuple[tuple, tuple]:
    import highspy

    M = highspy.HighsModelStatus
    return (M.kTimeLimit, M.kIterationLimit), (M.kInterrupt, M.kHighsInterrupt, M.kSolutionLimit, M.kObjectiveBound,
                                               M.kObjectiveTarget)


def status_of(model_status, has_solution: bool) -> SolveStatus:
    """The one mapping from a ``highspy.HighsModelStatus`` to ``SolveStatus`` (table in the module docstring)."""
    import highspy

    limits, stopped = _statuses()
    if model_status == highspy.HighsModelStatus.kOptimal:
        return SolveStatus.OPTIMAL
    if model_status == highspy.HighsModelStatus.kInfeasible:
        return SolveStatus.INFEASIBLE
    if model_status in limits:
        return SolveStatus.TIME_LIMIT
    if model_status in stopped:
        return SolveStatus.FEASIBLE
    return SolveStatus.FEASIBLE if has_solution else SolveStatus.ERROR


def solve(model: LinearModel, options: SolverOptions | None = None, *,
          stop: Callable[[], bool] | None = None, start: np.ndarray | None = None,
          stop_above: float | None = None) -> SolveOutcome:
    """Solve ``model`` with HiGHS and read how it ended, its incumbent and its proven dual bound.

    ``stop`` is polled from HiGHS's MIP interrupt callback (a few times per second of branch and bound); when it
    returns True the solve ends early with status FEASIBLE and whatever it had proven so far. A HiGHS failure is
    reported as status ERROR, never raised. ``start`` (one value per column) is handed to HiGHS as an incumbent
    (a MIP start; HiGHS checks it and ignores it if infeasible). ``stop_above``: end the branch and bound as soon
    as its proven dual bound exceeds this value (status FEASIBLE, ``dual_bound`` the bound proven then) -- for a
    sign decision no incumbent is needed."""
    import highspy

    t0 = time.perf_counter()
    try:
        h = model.to_highs(options)
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = [float(v) for v in start]
            h.setSolution(sol)
        if stop is not None or stop_above is not None:
            def interrupt(event) -> None:
                if stop is not None and stop():
                    event.interrupt()
                elif stop_above is not None and event.data_out.mip_dual_bound > stop_above:
                    event.interrupt()

            h.cbMipInterrupt.subscribe(interrupt)
        h.run()
    except Exception as exc:  # pragma: no cover - HiGHS internal failure is reported, not raised
        return SolveOutcome(SolveStatus.ERROR, math.inf, -math.inf, math.inf, time.perf_counter() - t0, None,
                            {"error": repr(exc)})
    seconds = time.perf_counter() - t0
    ms = h.getModelStatus()
    info = h.getInfo()
    has_sol = info.primal_solution_status == highspy.kSolutionStatusFeasible
    objective = float(info.objective_function_value) if has_sol else math.inf
    solution = np.asarray(h.getSolution().col_value, dtype=float) if has_sol else None
    status = status_of(ms, has_sol)
    limits, stopped = _statuses()
    detail: dict[str, Any] = {"highs_status": h.modelStatusToString(ms),
                              "nodes": int(info.mip_node_count) if model.is_mip else 0}
    if status is SolveStatus.INFEASIBLE:
        return SolveOutcome(status, math.inf, math.inf, math.inf, seconds, None, detail)
    if status is SolveStatus.ERROR:
        detail["error"] = detail["highs_status"]
    if status is SolveStatus.OPTIMAL:
        # HiGHS stops at mip_rel_gap: the proven bound is the dual bound, not the incumbent
        dual = min(float(info.mip_dual_bound), objective) if model.is_mip else objective
        dual = dual if not math.isnan(dual) else objective
    elif model.is_mip and (ms in limits or ms in stopped):
        # only a finite dual bound is taken as proven; infeasibility is believed only from the Infeasible status
        dual = float(info.mip_dual_bound)
        dual = dual if math.isfinite(dual) else -math.inf
    else:
        dual = -math.inf
    return SolveOutcome(status, objective, dual, relative_gap(objective, dual), seconds, solution, detail)


class _Lagrangian:
    """``lagrangian_bound`` for one model and many (multipliers, cost) pairs, its sparse matrix built once."""

    def __init__(self, model: LinearModel):
        from scipy.sparse import csr_matrix

        ri, ci, v = (np.asarray(a) for a in (model._ri, model._ci, model._v))
        self.ri = ri.astype(np.int64)
        self.v = v.astype(float)
        self.at = csr_matrix((self.v, (ci.astype(np.int64), self.ri)), shape=(model.num_cols, model.num_rows))
        self.abs_at = abs(self.at)
        self.rlo, self.rhi = np.asarray(model.rows_lo, dtype=float), np.asarray(model.rows_hi, dtype=float)
        self.lb, self.ub = np.asarray(model.lower, dtype=float), np.asarray(model.upper, dtype=float)
        self.cost, self.offset = np.asarray(model.cost, dtype=float), float(model.offset)
        self.size = model.num_cols + model.num_rows + len(self.v)

    def __call__(self, row_multipliers: np.ndarray, cost: np.ndarray | None = None,
                 offset: float | None = None) -> float:
        c = self.cost if cost is None else np.asarray(cost, dtype=float)
        off = self.offset if offset is None else float(offset)
        y = np.array(row_multipliers, dtype=float, copy=True)
        y[~np.isfinite(y)] = 0.0
        y[(y > 0) & ~np.isfinite(self.rlo)] = 0.0
        y[(y < 0) & ~np.isfinite(self.rhi)] = 0.0
        d = c - self.at @ y
        with np.errstate(invalid="ignore"):
            col = np.where(d > 0, d * self.lb, np.where(d < 0, d * self.ub, 0.0))
            row = np.where(y > 0, y * self.rlo, np.where(y < 0, y * self.rhi, 0.0))
        if not (np.isfinite(col).all() and np.isfinite(row).all()):
            return -math.inf
        magnitude = (np.abs(col).sum() + np.abs(row).sum() + np.abs(c).sum()
                     + float((self.abs_at @ np.abs(y)).sum()))
        total = off + col.sum() + row.sum()
        return float(total - 1e-12 * self.size * magnitude - 1e-9)


def lagrangian_bound(model: LinearModel, row_multipliers: np.ndarray, cost: np.ndarray | None = None,
                     offset: float | None = None) -> float:
    """A lower bound on ``min c.x + offset`` over the LP relaxation of ``model`` (integrality ignored) that holds for
    **any** row multipliers ``y``: ``c.x = (c - A^T y).x + y.(A x) >= sum_j min_{x_j in [lb, ub]} d_j x_j +
    sum_i min_{s in [lo_i, hi_i]} y_i s``. It does not trust the solver: hand it HiGHS's row duals and it replays
    the dual certificate in float64 (multipliers that would meet an infinite row bound are set to 0, which keeps
    the bound valid), lowered by a bound on float64's rounding of these sums. ``-inf`` if a reduced cost meets an
    infinite column bound."""
    return _Lagrangian(model)(row_multipliers, cost, offset)


def solve_lp_objectives(model: LinearModel, objectives: Iterable[tuple[np.ndarray, float]],
                        options: SolverOptions | None = None,
                        targets: Iterable[float] | None = None) -> list[SolveOutcome]:
    """Solve the LP relaxation of ``model`` once per ``(cost, offset)``, each solve warm-started from the previous
    basis (HiGHS keeps it when only the objective changes). Each outcome's ``dual_bound`` is the
    ``lagrangian_bound`` of HiGHS's row duals (a bound checked here, not HiGHS's word); ``objective`` is HiGHS's
    optimum. Statuses as in ``solve``.

    ``targets`` (one per objective): only "is the optimum above the target?" matters. Before any simplex work the
    Lagrangian bound is tried with the multipliers already at hand (zero, and every earlier objective's row duals);
    if one clears the target the objective is answered without a solve (status FEASIBLE, ``nodes`` 0, ``detail``
    names the multipliers). Otherwise the dual simplex stops as soon as its dual objective passes the target
    (HiGHS ``objective_bound``); the row duals at that point are replayed the same way (any multipliers give a
    valid bound), and if the replayed bound falls short the solve continues to the optimum."""
    import copy

    import highspy

    lp_model = copy.copy(model)
    lp_model.integer = [False] * model.num_cols
    opts = options or SolverOptions()
    t_end = time.perf_counter() + opts.time_limit
    lag = _Lagrangian(lp_model)
    h = None
    out = []
    idx = np.arange(model.num_cols, dtype=np.int32)
    objectives = list(objectives)
    targets = [None] * len(objectives) if targets is None else [float(t) for t in targets]
    prev_ys: list[np.ndarray] = []  # row duals of the objectives solved so far
    for (cost, offset), target in zip(objectives, targets):
        t0 = time.perf_counter()
        cost = np.asarray(cost, dtype=float)
        if target is not None:  # multipliers at hand first: no simplex work if one already proves the target
            tries = [("zero", np.zeros(lp_model.num_rows))] + [("previous", y) for y in prev_ys[::-1]]
            hit = None
            for how, y in tries:
                b = lag(y, cost, offset)
                if b > target:
                    hit = (how, b)
                    break
            if hit is not None:
                out.append(SolveOutcome(SolveStatus.FEASIBLE, math.inf, hit[1], math.inf, time.perf_counter() - t0,
                                        None, {"highs_status": f"lagrangian({hit[0]} multipliers)", "nodes": 0}))
                continue
        left = t_end - t0
        if left <= 0.01:
            out.append(SolveOutcome(SolveStatus.NOT_RUN, math.inf, -math.inf, math.inf, 0.0, None, {}))
            continue
        if h is None:
            h = lp_model.to_highs(opts)
        try:
            h.changeColsCost(len(idx), idx, cost)
            h.changeObjectiveOffset(float(offset))
            dual = -math.inf
            for cutoff in ([target + 1e-6 * (1.0 + abs(target)), math.inf] if target is not None else [math.inf]):
                h.setOptionValue("time_limit", float(max(t_end - time.perf_counter(), 0.01)))
                h.setOptionValue("objective_bound", float(cutoff))
                h.run()
                ms = h.getModelStatus()
                info = h.getInfo()
                sol = h.getSolution()
                if info.dual_solution_status == highspy.kSolutionStatusFeasible or ms == highspy.HighsModelStatus.kObjectiveBound:
                    y = np.asarray(sol.row_dual, dtype=float)
                    if len(y) == lp_model.num_rows:
                        prev_ys.append(y)
                        dual = max(dual, lag(y, cost, offset))
                if target is None or dual > target or ms != highspy.HighsModelStatus.kObjectiveBound:
                    break
        except Exception as exc:  # pragma: no cover - reported, not raised
            out.append(SolveOutcome(SolveStatus.ERROR, math.inf, -math.inf, math.inf, time.perf_counter() - t0,
                                    None, {"error": repr(exc)}))
            continue
        has_sol = info.primal_solution_status == highspy.kSolutionStatusFeasible
        status = status_of(ms, has_sol)
        objective = float(info.objective_function_value) if has_sol else math.inf
        out.append(SolveOutcome(status, objective, dual, relative_gap(objective, dual), time.perf_counter() - t0,
                                np.asarray(sol.col_value, dtype=float) if has_sol else None,
                                {"highs_status": h.modelStatusToString(ms), "nodes": 0}))
    return out
