"""The DP over ideals for joint plans: exact per-device partitions and a budget-dimension lower bound.

Every joint plan is a chain of ideals {} = I_0 <= I_1 <= ... <= I_k = V of the must-share-group DAG (stage s holds
I_{s+1} minus I_s and runs on device s, empty stages allowed). ``PairTable`` enumerates the ideals
(``tasks.partition.ideals.enumerate_ideals``) and every pair (I', I), I' strictly inside I, whose stage can cost at most
a known plan's bottleneck UB (its least work on any device plus its transfers, which depend on the pair only);
per-node sums over a pair are differences of per-ideal sums, so every stage quantity below costs one subtraction.

* ``exact_partition`` (bits fixed): F_s(I) = min over I' of max(F_{s-1}(I'), cost_s(I minus I')) with stage s's own
  device times and memory: the exact optimum of that bit assignment on heterogeneous pipelines too.
* ``budget_bound`` (bits free): the problem is "min T such that some plan has every stage <= T, fits every memory and
  has total sensitivity <= budget". For a fixed T the sensitivity is a sum over stages, so
  D_s(I) = min over I' of D_{s-1}(I') + h_s(I', I; T) is a DP with a budget dimension, where h_s is the least
  sensitivity of the stage's options under time T minus its transfers and memory cap_s. We use a lower bound on h_s
  (the Lagrangian of the stage's two knapsack constraints): for any multipliers mu, nu >= 0 and any options within
  both constraints, sum sens >= sum_i min_j (sens_ij + mu t_sij + nu m_ij) - mu (T - comm) - nu cap_s; h_s takes
  the best of a grid of (mu, nu) (every value valid, the grid only decides how tight), and inf when even the
  fastest (smallest) options exceed T (cap_s). If D_k(V; T) > budget no plan has bottleneck <= T, so T is a proven
  lower bound; D is non-increasing in T and a bisection gives the largest such T found. The chains of the DP at
  feasible T are also placements a primal heuristic completes with exact bits.

Note the objective is min-max, so the budget is handled through the threshold T (a min-sum DP per T), never by
adding lambda * sensitivity to a bottleneck (that Lagrangian does not decompose over stages).
The number of ideals grows with the graph's width: past ``max_ideals`` the table is built over the prefixes of a few
topological orders only (``PairTable.complete`` is False): its DPs still give valid plans (every prefix of a
topological order is an ideal) but no bound. Past ``max_pairs`` (or the time) no table is built.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.partition.colocation import Groups, must_share_groups
from forgeflow.tasks.partition.ideals import _build_tables, _Budget, enumerate_ideals
from forgeflow.tasks.partition.status import COST_RTOL, MEMORY_RTOL
from forgeflow.tasks.plan.instance import PlanInstance
from forgeflow.tasks.plan.mip import allowed_options


class TableTooLarge(Exception):
    """The ideals or the pairs exceed their caps (or the time): the DP is not run."""


@dataclass
class PairTable:
    inst: PlanInstance
    groups: Groups
    X: np.ndarray  # (N, G) ideal membership, row 0 = {}, row N-1 = V
    pa: np.ndarray  # (P,) inner ideal I'
    pb: np.ndarray  # (P,) outer ideal I
    comm: np.ndarray  # (P,) transfers of the stage I minus I'
    ok: np.ndarray  # (n, J) options a plan within the budget can use
    ub: float
    complete: bool  # every ideal (the DPs are exact); False: prefixes of some topological orders (plans only)
    _Xf: np.ndarray | None = None
    # a relaxed table (``relaxed_pairs``): the nodes of ``dropped`` are left out of every sum (None: none), and
    # ``sens_floor`` is their least total sensitivity (the budget left to the kept nodes is budget - sens_floor)
    dropped: np.ndarray | None = None
    sens_floor: float = 0.0
    full_groups: Groups | None = None  # the instance's own groups (a relaxed table's ``groups`` are the kept ones)
    kept: np.ndarray | None = None  # relaxed: (G,) bool over ``full_groups``

    @property
    def N(self) -> int:
        return self.X.shape[0]

    @property
    def P(self) -> int:
        return self.pa.size

    def ideal_sums(self, node_values: np.ndarray) -> np.ndarray:
        """(N, ...) per-ideal sums of per-node values (n, ...)."""
        v = np.asarray(node_values, dtype=float)
        if self.dropped is not None:
            v = np.where(self.dropped.reshape((-1,) + (1,) * (v.ndim - 1)), 0.0, v)
        G = self.groups.count
        gv = np.zeros((G,) + v.shape[1:])
        np.add.at(gv, self.groups.group_of, v)
        if self._Xf is None:
            self._Xf = self.X.astype(float)
        return self._Xf @ gv

    def pair_sums(self, node_values: np.ndarray) -> np.ndarray:
        s = self.ideal_sums(node_values)
        return s[self.pb] - s[self.pa]

    def assignment(self, chain: list[int]) -> np.ndarray:
        """Node -> stage from a chain of ideal rows (stage s = chain[s+1] minus chain[s]; repeats are empty). On a
        relaxed table every left-out group joins the latest stage of its predecessors (stage 0 without any), in
        topological order: precedence holds (a kept group's stage is at least every kept ancestor's)."""
        gs = np.zeros(self.groups.count, dtype=np.int64)
        for s, (a, b) in enumerate(zip(chain[:-1], chain[1:])):
            gs[self.X[b] & ~self.X[a]] = s
        if self.full_groups is None:
            return gs[self.groups.group_of]
        fg, kept = self.full_groups, self.kept
        full = np.zeros(fg.count, dtype=np.int64)
        full[kept] = gs[self.groups.group_of[[fg.members[g][0] for g in np.flatnonzero(kept)]]]
        for g in fg.order:
            if not kept[g]:
                full[g] = max((int(full[p]) for p in fg.preds[g]), default=0)
        return full[fg.group_of]


def build_pairs(inst: PlanInstance, ub: float, *, max_ideals: int = 10_000, max_pairs: int = 3_000_000,
                deadline: float | None = None) -> PairTable:
    """The ideals and the (I', I) pairs whose stage can cost <= ``ub`` on some device (raises TableTooLarge)."""
    deadline = time.perf_counter() + 30.0 if deadline is None else deadline
    groups = must_share_groups(inst.base)
    complete = True
    try:
        ideals = enumerate_ideals(groups, max_ideals, deadline)
    except _Budget as why:
        if str(why) != "count":
            raise TableTooLarge(f"ideals: {why}") from None
        ideals, complete = prefix_ideals(groups), False
    return _pair_table(inst, groups, ideals, ub, complete, max_pairs=max_pairs, deadline=deadline)


def _pair_table(inst: PlanInstance, groups: Groups, ideals: list[int], ub: float, complete: bool, *,
                max_pairs: int, deadline: float, dropped: np.ndarray | None = None, **extra) -> PairTable:
    tb = _build_tables(inst.base, groups, ideals)
    N = tb.N
    ok = allowed_options(inst)
    tfast = np.where(ok[None], inst.time, np.inf).min(axis=2).min(axis=0)  # (n,) fastest anywhere
    smin = np.where(ok, inst.size, np.inf).min(axis=1)
    if dropped is not None:
        tfast, smin = np.where(dropped, 0.0, tfast), np.where(dropped, 0.0, smin)
    gw = np.zeros(groups.count)
    np.add.at(gw, groups.group_of, tfast)
    gm = np.zeros(groups.count)
    np.add.at(gm, groups.group_of, smin)
    W = tb.X.astype(float) @ gw
    M = tb.X.astype(float) @ gm
    caps = [c for c in inst.mem_caps]
    big = None if any(c is None for c in caps) else max(caps)
    tol = COST_RTOL * max(1.0, float(W[-1]))
    order = np.argsort(W, kind="stable")
    Ws = W[order]
    pas, pbs, comms = [], [], []
    total = 0
    for b in range(1, N):
        if b % 256 == 0 and time.perf_counter() > deadline:
            raise TableTooLarge("pairs: time")
        lo = np.searchsorted(Ws, W[b] - ub - tol, side="left") if math.isfinite(ub) else 0
        hi = np.searchsorted(Ws, W[b] + tol, side="right")
        cand = order[lo:hi]
        cand = cand[tb.pc[cand] < tb.pc[b]]
        if cand.size:
            cand = cand[~np.any(tb.packed[cand] & ~tb.packed[b], axis=1)]
        if not cand.size:
            continue
        out = ((~tb.Xpad[cand[:, None], tb.EG[b][None, :]]) * tb.CE[b][None, :]).sum(axis=1)
        inn = (tb.Xpad[b][tb.TJ[cand]].any(axis=2) * tb.CE[cand]).sum(axis=1)
        comm = out + inn
        keep = W[b] - W[cand] + comm <= ub + tol
        if big is not None:
            keep &= M[b] - M[cand] <= big * (1 + MEMORY_RTOL)
        cand, comm = cand[keep], comm[keep]
        total += cand.size
        if total > max_pairs:
            raise TableTooLarge(f"more than {max_pairs} pairs")
        pas.append(cand)
        pbs.append(np.full(cand.size, b, dtype=np.int64))
        comms.append(comm)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt))
    return PairTable(inst, groups, tb.X, cat(pas, np.int64), cat(pbs, np.int64), cat(comms, float), ok, float(ub),
                     complete, dropped=dropped, **extra)


# ---------------------------------------------------------------------------------------------- relaxed tables
def _weights(inst: PlanInstance, groups: Groups) -> np.ndarray:
    """Per group: its least time anywhere plus its senders' transfer costs (what leaving it out can lose)."""
    ok = allowed_options(inst)
    tfast = np.where(ok[None], inst.time, np.inf).min(axis=2).min(axis=0)
    w = np.zeros(groups.count)
    np.add.at(w, groups.group_of, tfast)
    for u, _ in groups.senders:
        w[groups.group_of[u]] += float(inst.base.c[u])
    return w


def kept_groups(groups: Groups, kept: np.ndarray) -> Groups:
    """The groups of ``kept`` (renumbered in order) as a Groups object of their own: precedence is the original
    order restricted to them (an edge to each nearest kept ancestor, through left-out groups), senders keep only
    kept targets, and the left-out nodes map to group 0 (callers zero their values: ``PairTable.dropped``)."""
    G = groups.count
    new_id = np.cumsum(kept) - 1
    near: list[set[int]] = [set() for _ in range(G)]  # nearest kept ancestors (new ids), through left-out groups
    edges = set()
    for g in groups.order:
        acc: set[int] = set()
        for p in groups.preds[g]:
            if kept[p]:
                acc.add(int(new_id[p]))
            else:
                acc |= near[p]
        if kept[g]:
            edges.update((a, int(new_id[g])) for a in acc)
            near[g] = set()
        else:
            near[g] = acc
    members = tuple(groups.members[g] for g in np.flatnonzero(kept))
    group_of = np.zeros_like(groups.group_of)
    for ng, ms in enumerate(members):
        group_of[list(ms)] = ng
    senders = []
    for u, targets in groups.senders:
        gu = int(groups.group_of[u])
        if not kept[gu]:
            continue
        ts = tuple(int(new_id[t]) for t in targets if kept[t])
        if ts:
            senders.append((u, ts))
    order = tuple(int(new_id[g]) for g in groups.order if kept[g])
    K = len(members)
    return Groups(groups.problem, group_of, members, np.zeros(K), np.zeros(K), tuple(sorted(edges)), order,
                  tuple(senders))


def relaxed_pairs(inst: PlanInstance, ub: float, *, max_ideals: int = 2_000, max_pairs: int = 3_000_000,
                  deadline: float | None = None) -> PairTable:
    """A table for the budget bound on graphs too wide for every ideal: the lightest must-share groups are left
    out (the fewest whose removal brings the ideals under ``max_ideals``, by bisection). Leaving a group out is a
    relaxation: every plan, restricted to the kept groups, is a chain of ideals of the restricted order, each stage
    keeps at most its time, memory and transfers (a sender loses targets, never gains one), and the kept nodes'
    sensitivity is at most the budget minus the left-out nodes' least sensitivity (``sens_floor``). So the bound
    DP on this table is a valid lower bound; it loses at most what the left-out groups add to the bottleneck stage
    (nothing for the zero-work, zero-transfer nodes that make msr-fiddle's layer graphs wide). ``complete`` is
    True: its DPs are bounds, not plans (``assignment`` places the left-out groups after their predecessors)."""
    deadline = time.perf_counter() + 30.0 if deadline is None else deadline
    groups = must_share_groups(inst.base)
    w = _weights(inst, groups)
    order = np.argsort(w, kind="stable")
    cache: dict[int, list[int] | None] = {}

    def ideals_without(m: int) -> list[int] | None:
        if m not in cache:
            kept = np.ones(groups.count, dtype=bool)
            kept[order[:m]] = False
            try:
                cache[m] = enumerate_ideals(kept_groups(groups, kept), max_ideals, deadline)
            except _Budget as why:
                if str(why) != "count":
                    raise TableTooLarge(f"relaxed ideals: {why}") from None
                cache[m] = None
        return cache[m]

    # first try leaving out exactly the weightless groups, then bisect on how many of the lightest to leave out
    lo, hi = 0, groups.count - 1
    zero = int((w <= 0).sum())
    if zero and ideals_without(zero) is not None:
        hi = zero
    else:
        lo = zero
    if ideals_without(hi) is None:
        raise TableTooLarge("relaxed ideals: too many even with one group left")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ideals_without(mid) is not None:
            hi = mid
        else:
            lo = mid
    kept = np.ones(groups.count, dtype=bool)
    kept[order[:hi]] = False
    sub = kept_groups(groups, kept)
    dropped = ~kept[groups.group_of]
    ok = allowed_options(inst)
    floor = float(np.where(ok, inst.sens, np.inf).min(axis=1)[dropped].sum())
    return _pair_table(inst, sub, ideals_without(hi), ub, True, max_pairs=max_pairs, deadline=deadline,
                       dropped=dropped, sens_floor=floor, full_groups=groups, kept=kept)


def prefix_ideals(groups: Groups) -> list[int]:
    """The prefixes of a few topological orders of the group DAG (group order, depth-first, by depth and by height),
    as bitsets in nondecreasing size: ideals enough for good plans on graphs too wide to enumerate."""
    G = groups.count
    orders = [list(groups.order)]
    depth = np.zeros(G, dtype=np.int64)
    for g in groups.order:
        for h in groups.succs[g]:
            depth[h] = max(depth[h], depth[g] + 1)
    height = np.zeros(G, dtype=np.int64)
    for g in reversed(groups.order):
        for h in groups.succs[g]:
            height[g] = max(height[g], height[h] + 1)
    pos = {g: i for i, g in enumerate(groups.order)}
    orders.append(sorted(range(G), key=lambda g: (depth[g], pos[g])))
    orders.append(sorted(range(G), key=lambda g: (-height[g], pos[g])))
    # depth first: always continue with the most recently enabled group
    indeg = [len(p) for p in groups.preds]
    stack = [g for g in reversed(groups.order) if indeg[g] == 0]
    dfs = []
    while stack:
        g = stack.pop()
        dfs.append(g)
        for h in sorted(groups.succs[g], key=lambda h: -pos[h]):
            indeg[h] -= 1
            if indeg[h] == 0:
                stack.append(h)
    orders.append(dfs)
    seen = {0}
    for order in orders:
        cur = 0
        for g in order:
            cur |= 1 << g
            seen.add(cur)
    return sorted(seen, key=lambda b: (bin(b).count("1"), b))


# ---------------------------------------------------------------------------------------------- the two DPs
def _run_dp(table: PairTable, stage_cost, combine) -> tuple[float, list[int] | None]:
    """F_0 = [0, inf, ...]; F_s(I) = min(F_{s-1}(I), min over pairs (I', I) of combine(F_{s-1}(I'), cost_s)).
    ``stage_cost(s)`` gives the (P,) costs of stage s (inf = not allowed). Returns (F_k(V), chain or None)."""
    N, k = table.N, table.inst.k
    F = np.full(N, np.inf)
    F[0] = 0.0
    args = []
    for s in range(k):
        vals = combine(F[table.pa], stage_cost(s))
        Fn = F.copy()  # an empty stage keeps the previous value
        np.minimum.at(Fn, table.pb, vals)
        arg = np.arange(N)
        hit = (vals <= Fn[table.pb]) & np.isfinite(vals) & (vals < F[table.pb])
        arg[table.pb[hit]] = table.pa[hit]
        args.append(arg)
        F = Fn
    best = float(F[N - 1])
    if not math.isfinite(best):
        return best, None
    chain = [N - 1]
    for s in range(k - 1, -1, -1):
        chain.append(int(args[s][chain[-1]]))
    return best, chain[::-1]


def exact_partition(table: PairTable, choice: np.ndarray) -> tuple[float, np.ndarray | None]:
    """The exact min-bottleneck placement of a fixed bit assignment (stage s on device s, memory per stage), among
    plans of bottleneck <= the table's ``ub``. Returns (bottleneck, assignment) or (inf, None)."""
    inst = table.inst
    rows = np.arange(inst.n)
    t = table.pair_sums(inst.time[:, rows, choice].T)  # (P, k)
    m = table.pair_sums(inst.size[rows, choice])
    tol = COST_RTOL * max(1.0, table.ub if math.isfinite(table.ub) else 1.0)

    def cost(s: int) -> np.ndarray:
        c = t[:, s] + table.comm
        cap = inst.mem_caps[s]
        if cap is not None:
            c = np.where(m > cap * (1 + MEMORY_RTOL), np.inf, c)
        return np.where(c > table.ub + tol, np.inf, c)

    best, chain = _run_dp(table, cost, np.maximum)
    return best, (table.assignment(chain) if chain is not None else None)


class BudgetBound:
    """h_s lower bounds for every pair and stage, from a grid of Lagrange multipliers (see the module docstring)."""

    def __init__(self, table: PairTable, max_cells: float = 3e7) -> None:
        self.table = table
        inst = table.inst
        ok = table.ok
        sens = np.where(ok, inst.sens, np.inf)
        size = np.where(ok, inst.size, np.inf)
        # distinct devices (time rows + memory): stages on equal devices share their arrays
        self.dev_of: list[int] = []
        keys: list[tuple] = []
        for s in range(inst.k):
            key = (inst.time[s].tobytes(), inst.mem_caps[s])
            if key not in keys:
                keys.append(key)
            self.dev_of.append(keys.index(key))
        reps = [self.dev_of.index(d) for d in range(len(keys))]
        mus = _slopes(sens, np.where(ok[None], inst.time, np.inf)[reps])
        nus = _slopes(sens, size[None])
        P = max(table.P, 1)
        per_dev = max(int(max_cells / (P * len(reps))), 4)
        grid = _grid(mus, nus, per_dev)
        self.A: list[np.ndarray] = []
        self.tmin: list[np.ndarray] = []
        self.caps = [inst.mem_caps[s] for s in reps]
        smin = table.pair_sums(np.where(ok, inst.size, np.inf).min(axis=1))
        self.mem_bad = [np.zeros(table.P, dtype=bool) if c is None else smin > c * (1 + MEMORY_RTOL) for c in self.caps]
        for d, s in enumerate(reps):
            t = np.where(ok, inst.time[s], 0.0)
            cap = self.caps[d]
            g = grid if cap is not None else grid[grid[:, 1] == 0]
            # per node: min_j sens + mu t + nu m  (one column per multiplier pair)
            vals = (np.where(ok, inst.sens, 0.0)[:, :, None] + t[:, :, None] * g[None, None, :, 0]
                    + np.where(ok, inst.size, 0.0)[:, :, None] * g[None, None, :, 1])
            vals = np.where(ok[:, :, None], vals, np.inf).min(axis=1)  # (n, M)
            t = np.where(ok, t, np.inf)
            A = table.pair_sums(vals) + table.comm[:, None] * g[None, :, 0]
            if cap is not None:
                A = A - g[None, :, 1] * cap
            self.A.append((A, g[:, 0]))
            self.tmin.append(table.pair_sums(t.min(axis=1)) + table.comm)

    def stage_bounds(self, T: float) -> list[np.ndarray]:
        out = []
        for d, (A, mu) in enumerate(self.A):
            h = (A - mu[None, :] * T).max(axis=1)
            h = np.maximum(h, 0.0)
            # pair times are differences of per-ideal prefix sums: allow their rounding, or a stage whose time is
            # exactly T would be counted as over it (and the bound could exceed the optimum)
            over = self.tmin[d] > T + COST_RTOL * max(1.0, abs(T))
            out.append(np.where(over | self.mem_bad[d], np.inf, h))
        return out

    def least_sensitivity(self, T: float) -> tuple[float, list[int] | None]:
        """A lower bound on the least total sensitivity of plans with every stage <= T (inf: none), and the DP's
        chain (a placement worth completing with exact bits)."""
        hs = self.stage_bounds(T)
        return _run_dp(self.table, lambda s: hs[self.dev_of[s]], np.add)


def _slopes(sens: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Positive exchange rates d sens / d other between any two options of a node (the multipliers at which a node's
    Lagrangian choice changes)."""
    out = []
    J = sens.shape[1]
    for o in other:
        for j in range(J):
            for jj in range(J):
                with np.errstate(invalid="ignore", divide="ignore"):
                    ds = sens[:, j] - sens[:, jj]
                    dt = o[:, jj] - o[:, j]
                    r = ds / dt
                good = np.isfinite(r) & (ds > 0) & (dt > 0)
                out.append(r[good])
    r = np.concatenate(out) if out else np.zeros(0)
    return np.unique(r[r > 0])


def _grid(mus: np.ndarray, nus: np.ndarray, cells: int) -> np.ndarray:
    """(M, 2) multiplier pairs: 0, quantiles of the time rates, of the memory rates, and a few products."""
    def q(x: np.ndarray, m: int) -> np.ndarray:
        if x.size == 0 or m <= 0:
            return np.zeros(0)
        if x.size <= m:
            return x
        return np.unique(np.quantile(x, np.linspace(0, 1, m)))

    n_mu = max(min(cells // 2, 96), 2)
    n_nu = max(min(cells // 6, 24), 1)
    n_x = max(int(math.sqrt(max(cells - n_mu - n_nu, 0) / 2)), 0)
    rows = [(0.0, 0.0)] + [(m, 0.0) for m in q(mus, n_mu)] + [(0.0, v) for v in q(nus, n_nu)]
    rows += [(m, v) for m in q(mus, min(n_x, 8)) for v in q(nus, min(n_x, 6))]
    return np.unique(np.array(rows, dtype=float), axis=0)


def budget_bound(bb: BudgetBound, lo: float, hi: float, *, deadline: float, rtol: float = 1e-6,
                 budget: float | None = None) -> tuple[float, list[tuple[float, list[int]]]]:
    """Bisection for the largest T in [lo, hi) proven infeasible (least sensitivity > budget). Returns (bound, the
    chains met at feasible T, lowest T first). ``lo`` must itself be a proven lower bound (or 0)."""
    inst = bb.table.inst
    budget = inst.budget if budget is None else budget
    if budget is not None:
        budget = budget - bb.table.sens_floor  # a relaxed table: the left-out nodes take at least sens_floor
    limit = math.inf if budget is None else budget * (1 + 1e-9) + 1e-12
    chains: list[tuple[float, list[int]]] = []
    best_lo = lo
    a, b = lo, hi
    while b - a > rtol * max(abs(b), 1e-12) and time.perf_counter() < deadline:
        T = 0.5 * (a + b)
        val, chain = bb.least_sensitivity(T)
        if val > limit:
            a = best_lo = T
        else:
            b = T
            if chain is not None:
                chains.append((T, chain))
    chains.sort(key=lambda c: c[0])
    return best_lo, chains
