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

from tasks.partition.colocation import Groups, must_share_groups
from tasks.partition.problem import PartitionProblem
from tasks.partition.status import SolveStatus


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


def solve_ideals_dp(problem: PartitionProblem, k: int | None = None, *, upper_bound: float = np.inf,
                    max_ideals: int = 40_000, time_limit: float = 60.0, groups: Groups | None = None,
                    seconds_per_pair: float | None = 3e-7, schedule: str = "auto") -> IdealsResult:
    """Exact optimum over at most k stages by the DP over ideals (see module docstring).

    With ``seconds_per_pair`` set, the DP first counts the (ideal, earlier ideal) pairs inside the work window and
    returns NOT_RUN at once when that many pairs would not fit in the time left, instead of timing out later.
    ``schedule`` ("auto", "all" or "layered", the latter only with a finite upper bound) picks how the recursion is
    evaluated; both are exact.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    k = problem.k if k is None else int(k)
    groups = groups if groups is not None else must_share_groups(problem)
    G = groups.count
    try:
        ideals = enumerate_ideals(groups, max_ideals, deadline)
    except _Budget as why:
        status = SolveStatus.NOT_RUN if str(why) == "count" else SolveStatus.TIME_LIMIT
        return IdealsResult(status, np.full(k, np.nan), None, 0, time.perf_counter() - t0,
                            f"more than {max_ideals} ideals" if status is SolveStatus.NOT_RUN else "enumeration timed out")
    N = len(ideals)
    X = _to_matrix(ideals, G)  # (N, G), rows in nondecreasing popcount, row 0 = {} and row N-1 = V
    pc = X.sum(axis=1)
    work = np.asarray(groups.work, dtype=float)
    size = np.asarray(groups.size, dtype=float)
    W = X @ work
    M = X @ size
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

    if k <= 2:
        return _one_or_two_stages(problem, k, groups, X, W, M, CE, t0)

    order_w = np.argsort(W, kind="stable")
    W_sorted = W[order_w]
    cap = problem.mem_cap
    ub = float(upper_bound)
    tol = 1e-9 * max(1.0, float(W[-1]))

    def pair_costs(b: int, cand: np.ndarray) -> np.ndarray:
        """cost(I_b minus I') for candidate subsets I' (inf over the memory cap or above the upper bound)."""
        cost = W[b] - W[cand]
        # outgoing: exposed senders of I that are not in I'
        cost = cost + ((~Xpad[cand[:, None], EG[b][None, :]]) * CE[b][None, :]).sum(axis=1)
        # incoming: exposed senders of I' with an outside-I' target inside I
        cost = cost + (Xpad[b][TJ[cand]].any(axis=2) * CE[cand]).sum(axis=1)
        if cap is not None:
            cost = np.where(M[b] - M[cand] > cap * (1 + 1e-9), np.inf, cost)
        return np.where(cost > ub + tol, np.inf, cost)

    def subsets(b: int, cand: np.ndarray) -> np.ndarray:
        return cand[~np.any(packed[cand] & ~packed[b], axis=1)] if cand.size else cand

    # Two exact schedules of the same recursion; the cheaper (in candidate pairs) runs:
    # * "all": every ideal once, all layers at a time, candidates = earlier ideals within the work window;
    # * "layered": with a finite upper bound UB, an ideal can end stage t only if W(I) <= t UB and
    #   W(V) - W(I) <= (k - t) UB (a stage costs at least its work), which on tight instances leaves thin slices.
    pairs_all = pairs_layered = float(N) * N
    layers: list[np.ndarray] = []
    if np.isfinite(ub):
        lo_all = np.searchsorted(W_sorted, W - ub - tol, side="left")
        hi_all = np.searchsorted(W_sorted, W + tol, side="right")
        pairs_all = float((hi_all - lo_all).sum())
        layers = [np.array([0])]
        pairs_layered = 0.0
        for t in range(1, k + 1):
            inside = (W <= t * ub + tol) & (W[-1] - W <= (k - t) * ub + tol)
            layer = np.array([N - 1]) if t == k else np.flatnonzero(inside)
            prev_w = np.sort(W[layers[-1]])
            pairs_layered += float((np.searchsorted(prev_w, W[layer] + tol, side="right")
                                    - np.searchsorted(prev_w, W[layer] - ub - tol, side="left")).sum())
            layers.append(layer)
    layered = bool(layers) and (schedule == "layered" or (schedule == "auto" and pairs_layered < pairs_all))
    pairs = pairs_layered if layered else pairs_all
    if seconds_per_pair is not None and np.isfinite(ub):
        need = pairs * seconds_per_pair
        if need > deadline - time.perf_counter():
            return IdealsResult(SolveStatus.NOT_RUN, np.full(k, np.nan), None, N, time.perf_counter() - t0,
                                f"{N} ideals, about {pairs:.3g} pairs: estimated {need:.0f} s, over the time limit")

    Fdp = np.full((k + 1, N), np.inf)
    Fdp[0, 0] = 0.0
    arg = np.zeros((k + 1, N), dtype=np.int64)
    done = 0
    if layered:
        for t in range(1, k + 1):
            prev = layers[t - 1][np.isfinite(Fdp[t - 1, layers[t - 1]])]
            prev = prev[np.argsort(W[prev], kind="stable")]
            prev_w = W[prev]
            for b in layers[t].tolist():
                done += 1
                if done % 256 == 0 and time.perf_counter() > deadline:
                    return IdealsResult(SolveStatus.TIME_LIMIT, np.full(k, np.nan), None, N,
                                        time.perf_counter() - t0, f"layered DP timed out at stage {t} of {k}")
                lo = np.searchsorted(prev_w, W[b] - ub - tol, side="left")
                hi = np.searchsorted(prev_w, W[b] + tol, side="right")
                cand = prev[lo:hi]
                cand = subsets(b, cand[pc[cand] <= pc[b]])  # I' = I itself: an empty stage (cost 0)
                if not cand.size:
                    continue
                vals = np.maximum(Fdp[t - 1, cand], pair_costs(b, cand))
                j = int(vals.argmin())
                Fdp[t, b], arg[t, b] = vals[j], cand[j]
        # layer t only holds V when W(V) <= t UB: fill "at most t stages" for V from the layers below
        Fdp[1:, N - 1] = np.minimum.accumulate(Fdp[1:, N - 1])
    for b in ([] if layered else range(1, N)):
        if b % 256 == 0 and time.perf_counter() > deadline:
            return IdealsResult(SolveStatus.TIME_LIMIT, np.full(k, np.nan), None, N, time.perf_counter() - t0,
                                f"DP timed out after {b} of {N} ideals")
        lo = np.searchsorted(W_sorted, W[b] - ub - tol, side="left") if np.isfinite(ub) else 0
        hi = np.searchsorted(W_sorted, W[b] + tol, side="right")
        cand = order_w[lo:hi]
        cand = subsets(b, cand[pc[cand] < pc[b]])
        cost = pair_costs(b, cand)
        if cand.size:
            vals = np.maximum(Fdp[:k, cand], cost[None, :])  # (k, r): layer t - 1 -> t
            j = vals.argmin(axis=1)
            best_t = vals[np.arange(k), j]
            who_t = cand[j]
        else:
            best_t = np.full(k, np.inf)
            who_t = np.full(k, b)
        # an empty stage keeps the previous layer's value: F_t(I) = min(F_{t-1}(I), best_t)
        run = np.minimum.accumulate(np.concatenate([[Fdp[0, b]], best_t]))
        Fdp[1:, b] = run[1:]
        arg[1:, b] = np.where(run[:-1] <= best_t, b, who_t)
    best = Fdp[1:, N - 1].copy()
    assignment = None
    if np.isfinite(best[-1]):
        cur = N - 1
        chain = [cur]
        for t in range(k, 0, -1):
            cur = int(arg[t, cur])
            chain.append(cur)
        assignment = _assignment_from_chain(X, chain[::-1], groups)
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
        first = np.where(M > cap * (1 + 1e-9), np.inf, first)
        second = np.where(M[-1] - M > cap * (1 + 1e-9), np.inf, second)
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
