"""Exact DP over ideals (downward-closed sets) of the must-share-a-stage group DAG.

Every plan is a chain of ideals  {} = I_0 <= I_1 <= ... <= I_k = V  with stage s = I_s minus I_{s-1}, so

    F_t(I) = min over ideals I' <= I of max(F_{t-1}(I'), cost(I minus I'))

gives the optimum bottleneck F_k(V) exactly. This is the DP of msr-fiddle/dnn-partitioning, done over groups (so
co-location holds by construction) and vectorised per target ideal:

* ideals are enumerated breadth-first, each new one adding one group whose predecessors are all in (the addable set
  is kept incrementally), up to ``max_ideals`` and a time limit;
* for a target I the candidates I' are the earlier ideals whose work lies in [W(I) - upper_bound, W(I)] (a stage
  never costs less than its work), filtered by a packed-bitset subset test;
* cost(I minus I') = W(I) - W(I') + outgoing + incoming transfers, where outgoing is paid by the senders of I that
  feed a group outside I and are not in I', and incoming by the senders of I' that feed a group outside I' lying in I:
  both only touch each ideal's "exposed" senders, precomputed as small padded arrays.

Given the bottleneck UB of a known plan, the recursion is evaluated in whichever of two exact schedules has fewer
candidate pairs: all ideals at once (candidates within the work window above), or layer by layer, where an ideal can
end stage t only if W(I) <= t UB and W(V) - W(I) <= (k - t) UB; when k UB is close to the total work (the hard, large
instances) the layers are thin and InceptionV3's 36,596 ideals take about a second. k <= 2 needs no pairs at all.

The number of ideals can grow exponentially with the graph's width; the DP reports NOT_RUN past ``max_ideals`` (or
when the pairs it would visit cannot fit in the time left) and TIME_LIMIT past ``time_limit`` instead of returning
anything unproven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.partition.colocation import Groups, must_share_groups
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.status import COST_RTOL, MEMORY_RTOL, SolveStatus


@dataclass(frozen=True)
class IdealsResult:
    """Outcome of the DP. ``best[t - 1]`` is the exact optimum with at most t stages (t = 1..k) when status is OPTIMAL
    (inf where infeasible; restricted to plans of bottleneck <= ``upper_bound`` if one was given).
    ``assignment`` is an optimal node->stage plan for k stages (None unless OPTIMAL and feasible)."""

    status: SolveStatus
    best: np.ndarray
    assignment: np.ndarray | None
    ideals: int
    seconds: float
    message: str = ""


class _Budget(Exception):
    pass


def enumerate_ideals(groups: Groups, max_ideals: int, deadline: float) -> list[int]:
    """All ideals of the group DAG as bitsets (Python ints), in nondecreasing size. Raises _Budget past the caps."""
    G = groups.count
    pred_mask = [0] * G
    for g, h in groups.edges:
        pred_mask[h] |= 1 << g
    succ = groups.succs
    start_addable = 0
    for g in range(G):
        if pred_mask[g] == 0:
            start_addable |= 1 << g
    layer = {0: start_addable}
    out = [0]
    checks = 0
    while layer:
        nxt: dict[int, int] = {}
        for ideal, addable in layer.items():
            a = addable
            while a:
                low = a & -a
                a ^= low
                g = low.bit_length() - 1
                j = ideal | low
                if j in nxt:
                    continue
                add2 = addable & ~low
                for h in succ[g]:
                    if pred_mask[h] & j == pred_mask[h]:
                        add2 |= 1 << h
                nxt[j] = add2
            checks += 1
            if len(out) + len(nxt) > max_ideals:
                raise _Budget("count")
            if checks % 2048 == 0 and time.perf_counter() > deadline:
                raise _Budget("time")
        out.extend(nxt.keys())
        if len(out) > max_ideals:
            raise _Budget("count")
        layer = nxt
    return out


def _to_matrix(ideals: list[int], G: int) -> np.ndarray:
    nbytes = (G + 7) // 8
    buf = b"".join(i.to_bytes(nbytes, "little") for i in ideals)
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8).reshape(len(ideals), nbytes), axis=1, bitorder="little")
    return bits[:, :G].astype(bool)


@dataclass
class _Tables:
    """The DP's arrays over the N ideals (rows in nondecreasing size; row 0 = {}, row N-1 = V): membership ``X`` and
    its padded and bit-packed forms, popcount, work ``W``, size ``M``, and per ideal its exposed senders (senders in
    it with a target outside it): their cost ``CE``, group ``EG`` and outside targets ``TJ`` (sentinel G = padding)."""

    X: np.ndarray
    Xpad: np.ndarray
    packed: np.ndarray
    pc: np.ndarray
    W: np.ndarray
    M: np.ndarray
    CE: np.ndarray
    EG: np.ndarray
    TJ: np.ndarray

    @property
    def N(self) -> int:
        return self.X.shape[0]


def _build_tables(problem: PartitionProblem, groups: Groups, ideals: list[int]) -> _Tables:
    G = groups.count
    N = len(ideals)
    X = _to_matrix(ideals, G)  # (N, G), rows in nondecreasing popcount, row 0 = {} and row N-1 = V
    W = X @ np.asarray(groups.work, dtype=float)
    M = X @ np.asarray(groups.size, dtype=float)
    nwords = (G + 63) // 64
    packed = np.packbits(X, axis=1, bitorder="little")
    packed = np.pad(packed, ((0, 0), (0, nwords * 8 - packed.shape[1]))).view(np.uint64)

    # senders: (group of u, c_u, target groups); exposed in J = sender in J with a target outside J
    s_group = np.array([int(groups.group_of[u]) for u, _ in groups.senders], dtype=np.int64)
    s_cost = np.array([float(problem.c[u]) for u, _ in groups.senders], dtype=float)
    S = s_group.size
    Dmax = max((len(t) for _, t in groups.senders), default=1)
    TP = np.full((max(S, 1), Dmax), G, dtype=np.int64)  # padded targets, G = sentinel (never in any ideal)
    for si, (_, targets) in enumerate(groups.senders):
        TP[si, : len(targets)] = targets
    Xpad = np.concatenate([X, np.zeros((N, 1), dtype=bool)], axis=1)
    if S:
        inside = X[:, s_group]
        all_targets_in = np.ones((N, S), dtype=bool)
        for d in range(Dmax):
            col = TP[:S, d]
            all_targets_in &= Xpad[:, col] | (col == G)[None, :]
        exposed = inside & ~all_targets_in
    else:
        exposed = np.zeros((N, 0), dtype=bool)
    F = max(int(exposed.sum(axis=1).max()) if S else 0, 1)
    EU = np.argsort(~exposed, axis=1, kind="stable")[:, :F] if S else np.zeros((N, F), dtype=np.int64)
    valid = np.take_along_axis(exposed, EU, axis=1) if S else np.zeros((N, F), dtype=bool)
    CE = np.where(valid, s_cost[EU] if S else 0.0, 0.0)  # (N, F) cost of each exposed sender
    EG = np.where(valid, s_group[EU] if S else G, G)  # (N, F) its group (G for padding)
    TJ = TP[EU] if S else np.full((N, F, Dmax), G, dtype=np.int64)  # (N, F, Dmax) its targets ...
    TJ = np.where(valid[:, :, None] & ~np.take_along_axis(Xpad, TJ.reshape(N, -1), axis=1).reshape(TJ.shape),
                  TJ, G)  # ... that lie outside J (the only ones that can be in a later stage)
    return _Tables(X, Xpad, packed, X.sum(axis=1), W, M, CE, EG, TJ)


class _Recursion:
    """F_t(I) = min over ideals I' <= I of max(F_{t-1}(I'), cost(I minus I')), in one of two exact schedules."""

    def __init__(self, tb: _Tables, k: int, ub: float, cap: float | None, deadline: float) -> None:
        self.tb, self.k, self.ub, self.cap, self.deadline = tb, k, ub, cap, deadline
        self.tol = COST_RTOL * max(1.0, float(tb.W[-1]))
        self.order_w = np.argsort(tb.W, kind="stable")
        self.W_sorted = tb.W[self.order_w]
        self.F = np.full((k + 1, tb.N), np.inf)
        self.F[0, 0] = 0.0
        self.arg = np.zeros((k + 1, tb.N), dtype=np.int64)
        self.layers: list[np.ndarray] = []

    def pair_costs(self, b: int, cand: np.ndarray) -> np.ndarray:
        """cost(I_b minus I') for candidate subsets I' (inf over the memory cap or above the upper bound)."""
        tb = self.tb
        cost = tb.W[b] - tb.W[cand]
        # outgoing: exposed senders of I that are not in I'
        cost = cost + ((~tb.Xpad[cand[:, None], tb.EG[b][None, :]]) * tb.CE[b][None, :]).sum(axis=1)
        # incoming: exposed senders of I' with an outside-I' target inside I
        cost = cost + (tb.Xpad[b][tb.TJ[cand]].any(axis=2) * tb.CE[cand]).sum(axis=1)
        if self.cap is not None:
            cost = np.where(tb.M[b] - tb.M[cand] > self.cap * (1 + MEMORY_RTOL), np.inf, cost)
        return np.where(cost > self.ub + self.tol, np.inf, cost)

    def subsets(self, b: int, cand: np.ndarray) -> np.ndarray:
        packed = self.tb.packed
        return cand[~np.any(packed[cand] & ~packed[b], axis=1)] if cand.size else cand

    def count_pairs(self) -> tuple[float, float]:
        """Candidate pairs of the "all" and "layered" schedules (the layers are kept for ``run_layered``).

        * "all": every ideal once, all layers at a time, candidates = earlier ideals within the work window;
        * "layered": with a finite upper bound UB, an ideal can end stage t only if W(I) <= t UB and
          W(V) - W(I) <= (k - t) UB (a stage costs at least its work), which on tight instances leaves thin slices.
        """
        W, N, k, ub, tol = self.tb.W, self.tb.N, self.k, self.ub, self.tol
        if not np.isfinite(ub):
            return float(N) * N, float(N) * N
        lo_all = np.searchsorted(self.W_sorted, W - ub - tol, side="left")
        hi_all = np.searchsorted(self.W_sorted, W + tol, side="right")
        pairs_all = float((hi_all - lo_all).sum())
        self.layers = [np.array([0])]
        pairs_layered = 0.0
        for t in range(1, k + 1):
            inside = (W <= t * ub + tol) & (W[-1] - W <= (k - t) * ub + tol)
            layer = np.array([N - 1]) if t == k else np.flatnonzero(inside)
            prev_w = np.sort(W[self.layers[-1]])
            pairs_layered += float((np.searchsorted(prev_w, W[layer] + tol, side="right")
                                    - np.searchsorted(prev_w, W[layer] - ub - tol, side="left")).sum())
            self.layers.append(layer)
        return pairs_all, pairs_layered

    def run_layered(self) -> str | None:
        """Fill F layer by layer; returns a message if the deadline passed."""
        tb, F, arg, ub, tol = self.tb, self.F, self.arg, self.ub, self.tol
        done = 0
        for t in range(1, self.k + 1):
            prev = self.layers[t - 1][np.isfinite(F[t - 1, self.layers[t - 1]])]
            prev = prev[np.argsort(tb.W[prev], kind="stable")]
            prev_w = tb.W[prev]
            for b in self.layers[t].tolist():
                done += 1
                if done % 256 == 0 and time.perf_counter() > self.deadline:
                    return f"layered DP timed out at stage {t} of {self.k}"
                lo = np.searchsorted(prev_w, tb.W[b] - ub - tol, side="left")
                hi = np.searchsorted(prev_w, tb.W[b] + tol, side="right")
                cand = prev[lo:hi]
                cand = self.subsets(b, cand[tb.pc[cand] <= tb.pc[b]])  # I' = I itself: an empty stage (cost 0)
                if not cand.size:
                    continue
                vals = np.maximum(F[t - 1, cand], self.pair_costs(b, cand))
                j = int(vals.argmin())
                F[t, b], arg[t, b] = vals[j], cand[j]
        # layer t only holds V when W(V) <= t UB: fill "at most t stages" for V from the layers below
        F[1:, tb.N - 1] = np.minimum.accumulate(F[1:, tb.N - 1])
        return None

    def run_all(self) -> str | None:
        """Fill F one ideal at a time, all stage counts at once; returns a message if the deadline passed."""
        tb, F, arg, k = self.tb, self.F, self.arg, self.k
        for b in range(1, tb.N):
            if b % 256 == 0 and time.perf_counter() > self.deadline:
                return f"DP timed out after {b} of {tb.N} ideals"
            lo = np.searchsorted(self.W_sorted, tb.W[b] - self.ub - self.tol, side="left") if np.isfinite(self.ub) \
                else 0
            hi = np.searchsorted(self.W_sorted, tb.W[b] + self.tol, side="right")
            cand = self.order_w[lo:hi]
            cand = self.subsets(b, cand[tb.pc[cand] < tb.pc[b]])
            cost = self.pair_costs(b, cand)
            if cand.size:
                vals = np.maximum(F[:k, cand], cost[None, :])  # (k, r): layer t - 1 -> t
                j = vals.argmin(axis=1)
                best_t = vals[np.arange(k), j]
                who_t = cand[j]
            else:
                best_t = np.full(k, np.inf)
                who_t = np.full(k, b)
            # an empty stage keeps the previous layer's value: F_t(I) = min(F_{t-1}(I), best_t)
            run = np.minimum.accumulate(np.concatenate([[F[0, b]], best_t]))
            F[1:, b] = run[1:]
            arg[1:, b] = np.where(run[:-1] <= best_t, b, who_t)
        return None

    def chain(self) -> list[int]:
        """The chain of ideal rows {} = I_0 <= ... <= I_k = V of an optimal plan (repeats are empty stages)."""
        cur = self.tb.N - 1
        out = [cur]
        for t in range(self.k, 0, -1):
            cur = int(self.arg[t, cur])
            out.append(cur)
        return out[::-1]


def solve_ideals_dp(problem: PartitionProblem, k: int | None = None, *, upper_bound: float = np.inf,
                    max_ideals: int = 40_000, time_limit: float = 60.0, groups: Groups | None = None,
                    seconds_per_pair: float | None = 3e-7, schedule: str = "auto") -> IdealsResult:
    """Exact optimum over at most k stages by the DP over ideals (see module docstring).

    With ``seconds_per_pair`` set, the DP first counts the (ideal, earlier ideal) pairs inside the work window and
    returns NOT_RUN at once when that many pairs would not fit in the time left, instead of timing out later.
    ``schedule`` ("auto", "all" or "layered", the latter only with a finite upper bound) picks how the recursion is
    evaluated; both are exact. Phases: enumerate the ideals, build their tables, pick the schedule, run it, read
    the plan back.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    k = problem.k if k is None else int(k)
    groups = groups if groups is not None else must_share_groups(problem)

    def stop(status: SolveStatus, message: str, ideals: int = 0) -> IdealsResult:
        return IdealsResult(status, np.full(k, np.nan), None, ideals, time.perf_counter() - t0, message)

    try:
        ideals = enumerate_ideals(groups, max_ideals, deadline)
    except _Budget as why:
        if str(why) == "count":
            return stop(SolveStatus.NOT_RUN, f"more than {max_ideals} ideals")
        return stop(SolveStatus.TIME_LIMIT, "enumeration timed out")
    tb = _build_tables(problem, groups, ideals)
    N = tb.N
    if k <= 2:
        return _one_or_two_stages(problem, k, groups, tb.X, tb.W, tb.M, tb.CE, t0)

    rec = _Recursion(tb, k, float(upper_bound), problem.mem_cap, deadline)
    pairs_all, pairs_layered = rec.count_pairs()
    layered = bool(rec.layers) and (schedule == "layered" or (schedule == "auto" and pairs_layered < pairs_all))
    pairs = pairs_layered if layered else pairs_all
    if seconds_per_pair is not None and np.isfinite(rec.ub):
        need = pairs * seconds_per_pair
        if need > deadline - time.perf_counter():
            return stop(SolveStatus.NOT_RUN, f"{N} ideals, about {pairs:.3g} pairs: estimated {need:.0f} s, over "
                                             f"the time limit", N)
    late = rec.run_layered() if layered else rec.run_all()
    if late is not None:
        return stop(SolveStatus.TIME_LIMIT, late, N)
    best = rec.F[1:, N - 1].copy()
    assignment = _assignment_from_chain(tb.X, rec.chain(), groups) if np.isfinite(best[-1]) else None
    return IdealsResult(SolveStatus.OPTIMAL, best, assignment, N, time.perf_counter() - t0)


def _assignment_from_chain(X: np.ndarray, chain: list[int], groups: Groups) -> np.ndarray:
    """Node -> stage from a chain of ideal rows I_0 <= I_1 <= ... (repeated ideals are empty stages, skipped)."""
    gs = np.empty(X.shape[1], dtype=np.int64)
    stage = 0
    for a, b in zip(chain[:-1], chain[1:]):
        if a == b:
            continue
        gs[X[b] & ~X[a]] = stage
        stage += 1
    return gs[groups.group_of]


def _one_or_two_stages(problem: PartitionProblem, k: int, groups: Groups, X: np.ndarray, W: np.ndarray,
                       M: np.ndarray, CE: np.ndarray, t0: float) -> IdealsResult:
    """k <= 2 needs no pairs: stage 1 = {} .. I pays W(I) + the outputs leaving I, stage 2 = I .. V pays the rest of
    the work + the same outputs arriving (every exposed sender of I feeds a group outside I, hence in V)."""
    N = X.shape[0]
    cap = problem.mem_cap
    exposed = CE.sum(axis=1)
    first = W + exposed
    second = (W[-1] - W) + exposed
    if cap is not None:
        first = np.where(M > cap * (1 + MEMORY_RTOL), np.inf, first)
        second = np.where(M[-1] - M > cap * (1 + MEMORY_RTOL), np.inf, second)
    one = float(first[-1])
    best = np.array([one] if k == 1 else [one, min(one, float(np.maximum(first, second).min()))])
    assignment = None
    if np.isfinite(best[-1]):
        if k == 1 or best[-1] == one:
            chain = [0, N - 1]
        else:
            chain = [0, int(np.maximum(first, second).argmin()), N - 1]
        assignment = _assignment_from_chain(X, chain, groups)
    return IdealsResult(SolveStatus.OPTIMAL, best, assignment, N, time.perf_counter() - t0)
