"""HiGHS models for pipeline partitioning, one function per formulation, and the solve wrapper.

All formulations work on must-share-a-stage groups (``tasks.partition.colocation``) and use cumulative stage
variables: ``x[g, s] = 1`` iff group g sits in stage <= s. Precedence g -> h is then ``x[g, s] >= x[h, s]`` (tight
and trivially totally unimodular), ``y[g, s] = x[g, s] - x[g, s-1]`` says "g is in stage s", and the transfer terms
of the cost model are linear lower bounds on 0/1 indicator variables:

* ``out[u, s] >= y[g(u), s] - x[t, s]`` for each target group t of u: u is in s and t comes after s, so u's output
  leaves stage s (paid once, however many targets are later);
* ``inn[u, s] >= y[t, s] - y[g(u), s]``: t is in s and u is not, so u sits earlier and s receives u's output once.

Every returned dual bound is HiGHS's proven ``mip_dual_bound`` (or the optimum), never a heuristic value. Models are
built with and solved through the shared HiGHS adapter ``tasks.solver`` (``LinearModel``, ``solve``, ``shave_bound``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.partition.colocation import Groups, must_share_groups
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.stage_vars import add_stage_vars, add_transfers, stage_windows
from forgeflow.tasks.partition.status import Bound, SolveStatus
from forgeflow.tasks.solver import INF, LinearModel, SolverOptions, shave_bound, solve

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
    earliest, latest = stage_windows(groups, groups.work, k, bottleneck_cap)
    sv = add_stage_vars(mdl, groups, k, B, earliest, latest)
    x, y_terms = sv.x, sv.y
    load_cols: list[list[int]] = [[] for _ in range(k)]
    load_coefs: list[list[float]] = [[] for _ in range(k)]
    for s in range(k):
        for g in range(G):
            cols, coefs = y_terms(g, s, float(groups.work[g]))
            load_cols[s] += cols
            load_coefs[s] += coefs
    add_transfers(mdl, sv, groups, groups.problem.c, k, load_cols, load_coefs)
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
    res = solve(sm.model, SolverOptions(time_limit=time_limit))
    assignment = stages_from_values(sm, groups, res.solution) if res.solution is not None else None
    seconds = time.perf_counter() - t0
    if res.status == SolveStatus.INFEASIBLE:
        # no plan at all (memory), or none with bottleneck <= upper_bound: either way the optimum exceeds the cap
        value = float(upper_bound) if upper_bound is not None else math.inf
        return None, Bound(value, "mip_direct", SolveStatus.INFEASIBLE, seconds, res.detail), SolveStatus.INFEASIBLE
    value = shave_bound(max(res.dual_bound, floor)) if math.isfinite(res.dual_bound) else float(floor)
    detail = dict(res.detail, objective=res.objective)
    return assignment, Bound(value, "mip_direct", res.status, seconds, detail), res.status
