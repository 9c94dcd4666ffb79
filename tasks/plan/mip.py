"""HiGHS models of the joint problem (built with ``tasks.solver.LinearModel``, solved by ``tasks.solver.solve``).

``joint_model``: every node picks an option (``z[i, j]`` binary, one per node) and every must-share group a stage
(cumulative ``x[g, s]`` as in ``tasks.partition.mip``: precedence is ``x[g, s] >= x[h, s]``, ``y = x[s] - x[s-1]``).
A stage's time and memory are written against each node's slowest / largest option, minus the saving of the option
actually chosen on that stage: ``v[i, j, s] <= z[i, j]``, ``v[i, j, s] <= y[g(i), s]``. Savings are non-negative,
so at integer ``x, z`` the best ``v`` is exactly ``z * y`` and the model's optimum is the joint optimum; its dual
bound is a proven lower bound. Transfers are the msr cost model's (``out`` / ``inn`` indicators, as there).

``placement_bits_model``: the stage of every node fixed, the best options (min bottleneck under the per-stage
memory and the budget): a small multiple-choice knapsack MIP.
``budget_work_model``: min total work under the budget, ignoring placement (its dual bound / k is a lower bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.partition.colocation import Groups
from forgeflow.tasks.partition.stage_vars import add_stage_vars, add_transfers, stage_windows
from forgeflow.tasks.partition.cost import stage_loads
from forgeflow.tasks.solver import INF, LinearModel
from forgeflow.tasks.plan.instance import PlanInstance


def allowed_options(inst: PlanInstance) -> np.ndarray:
    """Options a plan within the budget can use: those whose sensitivity, with every other node at its least
    sensitive option, stays within the budget."""
    ok = inst.valid.copy()
    if inst.budget is not None:
        smin = np.where(inst.valid, inst.sens, np.inf).min(axis=1)
        rest = smin.sum() - smin
        ok &= inst.sens + rest[:, None] <= inst.budget * (1 + 1e-9) + 1e-12
    return ok


@dataclass(frozen=True)
class JointModel:
    model: LinearModel
    x: np.ndarray  # (G, k)
    z: dict  # (i, j) -> column
    v: dict  # (i, j, s) -> column
    out: dict  # (u, s) -> column
    inn: dict  # (u, s) -> column
    B: int
    groups: Groups

    def read(self, inst: PlanInstance, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xv = values[self.x] > 0.5
        a = np.argmax(xv, axis=1)[self.groups.group_of].astype(np.int64)
        choice = np.zeros(inst.n, dtype=np.int64)
        best = np.full(inst.n, -1.0)
        for (i, j), col in self.z.items():
            if values[col] > best[i]:
                best[i], choice[i] = values[col], j
        return a, choice

    def start(self, inst: PlanInstance, a: np.ndarray, choice: np.ndarray, bottleneck: float) -> np.ndarray:
        """A full column vector for the plan (a, choice): a MIP start."""
        vals = np.zeros(self.model.num_cols)
        gs = np.zeros(self.groups.count, dtype=np.int64)
        gs[self.groups.group_of] = a
        k = self.x.shape[1]
        for g in range(self.groups.count):
            vals[self.x[g]] = (np.arange(k) >= gs[g]).astype(float)
        for (i, j), col in self.z.items():
            vals[col] = 1.0 if choice[i] == j else 0.0
        for (i, j, s), col in self.v.items():
            vals[col] = 1.0 if choice[i] == j and a[i] == s else 0.0
        for u, targets in self.groups.senders:
            su = int(gs[self.groups.group_of[u]])
            ts = [int(gs[t]) for t in targets]
            for s in range(k):
                if (u, s) in self.out:
                    vals[self.out[(u, s)]] = 1.0 if su == s and any(t > s for t in ts) else 0.0
                if (u, s) in self.inn:
                    vals[self.inn[(u, s)]] = 1.0 if su != s and any(t == s for t in ts) else 0.0
        vals[self.B] = bottleneck
        return vals


def joint_model(inst: PlanInstance, groups: Groups, *, cap: float | None = None, floor: float = 0.0,
                fixed_choice: np.ndarray | None = None, assignment_only: bool = False) -> JointModel:
    """The joint min-bottleneck model (see the module docstring). ``cap`` bounds B from above (and fixes stage
    variables a stage of at most ``cap`` rules out), ``floor`` from below; ``fixed_choice`` pins every option (the
    exact partition of one bit assignment, for heterogeneous devices). ``assignment_only`` drops precedence and
    transfers: every group on any device, options within budget and memory (an unrelated-machines relaxation whose
    optimum, or dual bound, is a lower bound; small and quick where the full model is slow)."""
    mdl = LinearModel()
    G, k, n = groups.count, inst.k, inst.n
    ok = allowed_options(inst)
    if fixed_choice is not None:
        ok = np.zeros_like(ok)
        ok[np.arange(n), fixed_choice] = True
    B = mdl.add_var(float(max(floor, 0.0)), INF if cap is None else float(cap), cost=1.0)
    tmask = np.where(ok[None], inst.time, np.nan)
    tmax = np.nanmax(tmask, axis=2)  # (k, n)
    tmin_any = np.nanmin(np.nanmin(tmask, axis=2), axis=0)  # (n,)
    smask = np.where(ok, inst.size, np.nan)
    smax = np.nanmax(smask, axis=1)
    gw = np.array([tmin_any[list(m)].sum() for m in groups.members])
    earliest, latest = stage_windows(groups, gw, k, None if assignment_only else cap)
    sv = add_stage_vars(mdl, groups, k, B, earliest, latest, precedence=not assignment_only)
    x, y_terms = sv.x, sv.y

    load_cols: list[list[int]] = [[] for _ in range(k)]
    load_coefs: list[list[float]] = [[] for _ in range(k)]
    mem_cols: list[list[int]] = [[] for _ in range(k)]
    mem_coefs: list[list[float]] = [[] for _ in range(k)]
    for s in range(k):
        for g in range(G):
            mem = list(groups.members[g])
            cols, coefs = y_terms(g, s, float(tmax[s, mem].sum()))
            load_cols[s] += cols
            load_coefs[s] += coefs
            cols, coefs = y_terms(g, s, float(smax[mem].sum()))
            mem_cols[s] += cols
            mem_coefs[s] += coefs
    z: dict = {}
    v: dict = {}
    budget_cols: list[int] = []
    budget_coefs: list[float] = []
    for i in range(n):
        opts = np.flatnonzero(ok[i])
        if opts.size <= 1:
            continue
        for j in opts:
            z[(i, int(j))] = mdl.add_var(0, 1, integer=True)
            if inst.sens[i, j] > 0:
                budget_cols.append(z[(i, int(j))])
                budget_coefs.append(float(inst.sens[i, j]))
        mdl.add_row([z[(i, int(j))] for j in opts], [1.0] * opts.size, lo=1.0, hi=1.0)
        g = int(groups.group_of[i])
        for s in range(k):
            vs = []
            for j in opts:
                dt = float(tmax[s, i] - inst.time[s, i, j])
                dm = float(smax[i] - inst.size[i, j])
                if dt <= 0 and dm <= 0:
                    continue
                col = mdl.add_var(0, 1)
                v[(i, int(j), s)] = col
                vs.append(col)
                mdl.add_row([col, z[(i, int(j))]], [1.0, -1.0], hi=0.0)
                if dt > 0:
                    load_cols[s].append(col)
                    load_coefs[s].append(-dt)
                if dm > 0:
                    mem_cols[s].append(col)
                    mem_coefs[s].append(-dm)
            if vs:
                cols, coefs = y_terms(g, s)
                mdl.add_row(vs + cols, [1.0] * len(vs) + [-a for a in coefs], hi=0.0)  # sum_j v <= y
    if inst.budget is not None and budget_cols:
        mdl.add_row(budget_cols, budget_coefs, hi=float(inst.budget))
    if assignment_only:
        out, inn = {}, {}
    else:
        out, inn = add_transfers(mdl, sv, groups, inst.base.c, k, load_cols, load_coefs)
    for s in range(k):
        mdl.add_row(load_cols[s] + [B], load_coefs[s] + [-1.0], hi=0.0)
        if inst.mem_caps[s] is not None:
            mdl.add_row(mem_cols[s], mem_coefs[s], hi=float(inst.mem_caps[s]))
    return JointModel(mdl, x, z, v, out, inn, B, groups)


def placement_bits_model(inst: PlanInstance, assignment: np.ndarray) -> tuple[LinearModel, dict, int]:
    """min T over options with every node's stage fixed: stage s's chosen times + its (fixed) transfers <= T, its
    chosen sizes <= its memory, total sensitivity <= budget. Returns (model, (i, j) -> column, T column)."""
    a = np.asarray(assignment, dtype=np.int64)
    k, n = inst.k, inst.n
    ok = allowed_options(inst)
    comm = stage_loads(inst.base, a, k)
    mdl = LinearModel()
    T = mdl.add_var(0.0, INF, cost=1.0)
    load_cols: list[list[int]] = [[T] for _ in range(k)]
    load_coefs: list[list[float]] = [[-1.0] for _ in range(k)]
    load_const = comm.comm_in + comm.comm_out
    mem_cols: list[list[int]] = [[] for _ in range(k)]
    mem_coefs: list[list[float]] = [[] for _ in range(k)]
    mem_const = np.zeros(k)
    z: dict = {}
    bcols: list[int] = []
    bcoefs: list[float] = []
    bconst = 0.0
    for i in range(n):
        s = int(a[i])
        opts = np.flatnonzero(ok[i])
        if opts.size == 0:
            opts = np.array([0])
        if opts.size == 1:
            j = int(opts[0])
            load_const[s] += inst.time[s, i, j]
            mem_const[s] += inst.size[i, j]
            bconst += inst.sens[i, j]
            continue
        cols = []
        for j in opts:
            col = mdl.add_var(0, 1, integer=True)
            z[(i, int(j))] = col
            cols.append(col)
            load_cols[s].append(col)
            load_coefs[s].append(float(inst.time[s, i, j]))
            mem_cols[s].append(col)
            mem_coefs[s].append(float(inst.size[i, j]))
            if inst.sens[i, j] > 0:
                bcols.append(col)
                bcoefs.append(float(inst.sens[i, j]))
        mdl.add_row(cols, [1.0] * len(cols), lo=1.0, hi=1.0)
    for s in range(k):
        mdl.add_row(load_cols[s], load_coefs[s], hi=-float(load_const[s]))
        if inst.mem_caps[s] is not None:
            mdl.add_row(mem_cols[s], mem_coefs[s], hi=float(inst.mem_caps[s]) - float(mem_const[s]))
    if inst.budget is not None:
        mdl.add_row(bcols, bcoefs, hi=float(inst.budget) - bconst)
    return mdl, z, T


def knapsack_model(inst: PlanInstance, cost: np.ndarray, *, total_memory: float | None = None
                   ) -> tuple[LinearModel, dict, float]:
    """min sum cost[i, chosen] over options under the budget (and a total memory): a multiple-choice knapsack.
    Returns (model, (i, j) -> column, constant part of the objective)."""
    ok = allowed_options(inst)
    mdl = LinearModel()
    z: dict = {}
    const = 0.0
    bcols, bcoefs, mcols, mcoefs = [], [], [], []
    bconst = mconst = 0.0
    for i in range(inst.n):
        opts = np.flatnonzero(ok[i])
        if opts.size == 1:
            j = int(opts[0])
            const += float(cost[i, j])
            bconst += float(inst.sens[i, j])
            mconst += float(inst.size[i, j])
            continue
        cols = []
        for j in opts:
            col = mdl.add_var(0, 1, cost=float(cost[i, j]), integer=True)
            z[(i, int(j))] = col
            cols.append(col)
            bcols.append(col)
            bcoefs.append(float(inst.sens[i, j]))
            mcols.append(col)
            mcoefs.append(float(inst.size[i, j]))
        mdl.add_row(cols, [1.0] * len(cols), lo=1.0, hi=1.0)
    if inst.budget is not None and bcols:
        mdl.add_row(bcols, bcoefs, hi=float(inst.budget) - bconst)
    if total_memory is not None and mcols:
        mdl.add_row(mcols, mcoefs, hi=float(total_memory) - mconst)
    return mdl, z, const


def read_choice(inst: PlanInstance, z: dict, values: np.ndarray, default: np.ndarray | None = None) -> np.ndarray:
    ok = allowed_options(inst)
    choice = np.array([int(np.flatnonzero(ok[i])[0]) if ok[i].any() else 0 for i in range(inst.n)], dtype=np.int64) \
        if default is None else default.copy()
    best = np.full(inst.n, -1.0)
    for (i, j), col in z.items():
        if values[col] > best[i]:
            best[i], choice[i] = values[col], j
    return choice
