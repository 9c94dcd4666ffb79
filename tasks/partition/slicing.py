"""Exact DP that slices one topological order into at most k contiguous blocks (stages).

Works on must-share-a-stage groups (co-location classes closed under "a node between two nodes of a stage is in that
stage", see ``tasks.partition.colocation``), so every cut between two consecutive groups of the order respects
co-location, and a block is feasible iff its summed size fits the memory cap.

For an order of G groups the cost of every block [i, j) is built at once in O(G^2 + senders + edges): compute time
from prefix sums, and each sender's transfer cost is a union of axis-aligned rectangles in (i, j) (its output leaves
a block that holds it but not its last consumer; it enters a block that holds a consumer but not the sender),
accumulated with a 2-D difference array and two cumulative sums. The min-max DP over blocks is then k vectorised
O(G^2) passes, which is what lets the search over orders decode thousands of orders per minute.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from forgeflow.tasks.partition.colocation import Groups, must_share_groups
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.status import COST_RTOL
from forgeflow.tasks.solver import MEMORY_RTOL


@dataclass(frozen=True)
class SlicedOrder:
    """The best slicing of ``order`` (group ids) into at most k blocks.

    ``bottleneck`` in ms (inf when no slicing fits the memory cap); ``cuts`` the block boundaries as positions in
    the order (0 = c_0 < c_1 < ... < c_b = G, empty blocks dropped); ``group_stage[g]`` the stage of group g.
    """

    bottleneck: float
    order: np.ndarray
    cuts: tuple[int, ...]
    group_stage: np.ndarray


class OrderSlicer:
    """Precomputed arrays of one problem for slicing many orders quickly."""

    #: the banded slicing DP runs when k (G + 1)^2 exceeds this (below it the full matrix pass is cheaper)
    band_min_entries = 2_000_000

    def __init__(self, problem: PartitionProblem, groups: Groups | None = None) -> None:
        self.problem = problem
        self.groups = groups if groups is not None else must_share_groups(problem)
        g = self.groups
        self.G = g.count
        self.work = np.asarray(g.work, dtype=float)
        self.size = np.asarray(g.size, dtype=float)
        self.cap = problem.mem_cap
        s_group, s_cost, t_sender, t_group = [], [], [], []
        for si, (u, targets) in enumerate(g.senders):
            s_group.append(int(g.group_of[u]))
            s_cost.append(float(problem.c[u]))
            t_sender.extend([si] * len(targets))
            t_group.extend(targets)
        self.s_group = np.asarray(s_group, dtype=np.int64)
        self.s_cost = np.asarray(s_cost, dtype=float)
        self.t_sender = np.asarray(t_sender, dtype=np.int64)
        self.t_group = np.asarray(t_group, dtype=np.int64)
        self.succ = [list(s) for s in g.succs]
        self.indeg = np.zeros(self.G, dtype=np.int64)
        for _, h in g.edges:
            self.indeg[h] += 1

    # ------------------------------------------------------------------ orders
    @cached_property
    def default_order(self) -> np.ndarray:
        return np.asarray(self.groups.order, dtype=np.int64)

    def order_from_keys(self, keys: np.ndarray) -> np.ndarray:
        """The topological order of groups that always takes the ready group with the smallest key (Kahn)."""
        keys = np.asarray(keys, dtype=float)
        indeg = self.indeg.copy()
        ready = [(float(keys[g]), g) for g in np.flatnonzero(indeg == 0).tolist()]
        heapq.heapify(ready)
        order = np.empty(self.G, dtype=np.int64)
        n = 0
        succ = self.succ
        while ready:
            _, g = heapq.heappop(ready)
            order[n] = g
            n += 1
            for h in succ[g]:
                indeg[h] -= 1
                if indeg[h] == 0:
                    heapq.heappush(ready, (float(keys[h]), h))
        return order

    def is_topological(self, order: np.ndarray) -> bool:
        pos = np.empty(self.G, dtype=np.int64)
        pos[np.asarray(order)] = np.arange(self.G)
        e = np.asarray(self.groups.edges, dtype=np.int64).reshape(-1, 2)
        return bool(np.all(pos[e[:, 0]] < pos[e[:, 1]])) if e.size else True

    # ------------------------------------------------------------------ block costs
    def block_costs(self, order: np.ndarray) -> np.ndarray:
        """C[i, j] = cost (ms) of the block of positions [i, j) of ``order``; inf where j < i or over memory;
        C[i, i] = 0 (an empty block, which makes "at most k blocks" fall out of the DP)."""
        G = self.G
        order = np.asarray(order, dtype=np.int64)
        pos = np.empty(G, dtype=np.int64)
        pos[order] = np.arange(G)
        size = G + 2
        i0: list[np.ndarray] = []
        i1: list[np.ndarray] = []
        j0: list[np.ndarray] = []
        j1: list[np.ndarray] = []
        val: list[np.ndarray] = []
        if self.s_group.size:
            sp = pos[self.s_group]
            tp = pos[self.t_group]
            # sort targets by (sender, position) so each sender's targets are consecutive and ascending
            idx = np.lexsort((tp, self.t_sender))
            ts, tpos = self.t_sender[idx], tp[idx]
            first = np.ones(ts.size, dtype=bool)
            first[1:] = ts[1:] != ts[:-1]
            last = np.ones(ts.size, dtype=bool)
            last[:-1] = ts[1:] != ts[:-1]
            # outgoing: block holds the sender (i <= p < j) but not its last consumer (j <= L)
            L = np.full(self.s_group.size, -1, dtype=np.int64)
            L[ts[last]] = tpos[last]
            has = L >= 0
            i0.append(np.zeros(int(has.sum()), dtype=np.int64))
            i1.append(sp[has])
            j0.append(sp[has] + 1)
            j1.append(L[has])
            val.append(self.s_cost[has])
            # incoming: for i in (previous consumer, this consumer], the block receives iff j > this consumer
            prev = np.empty_like(tpos)
            prev[first] = sp[ts[first]]
            prev[~first] = tpos[np.flatnonzero(~first) - 1]
            i0.append(prev + 1)
            i1.append(tpos)
            j0.append(tpos + 1)
            j1.append(np.full(tpos.size, G, dtype=np.int64))
            val.append(self.s_cost[ts])
        if val:
            a0, a1, b0, b1 = (np.concatenate(x) for x in (i0, i1, j0, j1))
            v = np.concatenate(val)
            flat = np.concatenate([a0 * size + b0, (a1 + 1) * size + b0, a0 * size + (b1 + 1), (a1 + 1) * size + (b1 + 1)])
            wts = np.concatenate([v, -v, -v, v])
            D = np.bincount(flat, weights=wts, minlength=size * size).reshape(size, size)
            comm = np.cumsum(np.cumsum(D, axis=0), axis=1)[: G + 1, : G + 1]
        else:
            comm = np.zeros((G + 1, G + 1))
        wp = np.concatenate([[0.0], np.cumsum(self.work[order])])
        C = comm + (wp[None, :] - wp[:, None])
        invalid = np.tri(G + 1, G + 1, -1, dtype=bool)  # j < i
        if self.cap is not None:
            mp = np.concatenate([[0.0], np.cumsum(self.size[order])])
            invalid |= (mp[None, :] - mp[:, None]) > self.cap * (1 + MEMORY_RTOL)
        C[invalid] = np.inf
        np.fill_diagonal(C, 0.0)
        return C

    # ------------------------------------------------------------------ DP
    def best_per_k(self, order: np.ndarray, kmax: int) -> np.ndarray:
        """best[t - 1] = optimal bottleneck of ``order`` with at most t blocks, t = 1..kmax."""
        C = self.block_costs(order)
        f = np.full(self.G + 1, np.inf)
        f[0] = 0.0
        out = np.empty(kmax)
        for t in range(kmax):
            f = np.maximum(f[:, None], C).min(axis=0)
            out[t] = f[-1]
        return out

    def _quick_upper(self, order: np.ndarray, k: int, C: np.ndarray) -> float:
        """The bottleneck of one feasible slicing of ``order`` (cuts where the running work crosses s W / k), or
        inf when that slicing breaks the memory cap: an upper bound on the order's optimal slicing."""
        wp = np.concatenate([[0.0], np.cumsum(self.work[order])])
        total = wp[-1]
        if total <= 0:
            return math.inf
        cuts = np.unique(np.concatenate([[0], np.searchsorted(wp, total * np.arange(1, k) / k, side="left"),
                                         [self.G]]))
        return float(C[cuts[:-1], cuts[1:]].max())

    def slice(self, order: np.ndarray, k: int, C: np.ndarray | None = None) -> SlicedOrder:
        """Optimal slicing of ``order`` into at most k blocks (exact: min over all cut sets of the max block cost).

        The min-max DP only needs blocks whose work is at most the bottleneck B0 of some feasible slicing (a block
        costs at least its work, and the optimum is <= B0), so for each block end j the starts i lie in a band of
        the work prefix: k passes over (G + 1) x band instead of (G + 1)^2 entries (about k / 2 times fewer at
        many stages). The full matrix pass is used on small instances and when no feasible quick slicing exists."""
        order = np.asarray(order, dtype=np.int64)
        if C is None:
            C = self.block_costs(order)
        G = self.G
        cols = np.arange(G + 1)
        f = np.full(G + 1, np.inf)
        f[0] = 0.0
        args = np.empty((k, G + 1), dtype=np.int64)
        # the band pays off on large graphs at many stages; small passes are cheaper over the full matrix
        b0 = self._quick_upper(order, k, C) if k * (G + 1) ** 2 > self.band_min_entries else math.inf
        if math.isfinite(b0):
            wp = np.concatenate([[0.0], np.cumsum(self.work[order])])
            tol = COST_RTOL * max(1.0, float(wp[-1]))
            lo = np.searchsorted(wp, wp - b0 - tol, side="left")  # first start i with work(i, j) <= B0
            L = int((cols - lo).max())
            starts = cols[:, None] - np.arange(L, -1, -1)[None, :]  # (G + 1, L + 1), ascending starts per row
            inside = starts >= lo[:, None]
            starts = np.clip(starts, 0, G)
            Cb = np.where(inside, C[starts, cols[:, None]], np.inf)
            for t in range(k):
                M = np.maximum(f[starts], Cb)
                a = M.argmin(axis=1)
                args[t] = starts[cols, a]
                f = M[cols, a]
        else:
            for t in range(k):
                M = np.maximum(f[:, None], C)
                a = M.argmin(axis=0)
                args[t] = a
                f = M[a, cols]
        best = float(f[-1])
        cuts = [G]
        j = G
        for t in range(k - 1, -1, -1):
            i = int(args[t, j])
            if i != j:
                cuts.append(i)
            j = i
        cuts = sorted(set(cuts) | {0})
        gs = np.empty(G, dtype=np.int64)
        for s, (a0, b0_) in enumerate(zip(cuts[:-1], cuts[1:])):
            gs[order[a0:b0_]] = s
        return SlicedOrder(best, order, tuple(cuts), gs)

    def node_assignment(self, group_stage: np.ndarray) -> np.ndarray:
        """Stage of every node from the stage of every group."""
        return np.asarray(group_stage, dtype=np.int64)[self.groups.group_of]

    def group_order_from_assignment(self, assignment: np.ndarray) -> np.ndarray:
        """A topological order of groups that lists stage 0's groups first, then stage 1's, ... (keys = stage)."""
        gs = np.asarray(assignment, dtype=float)[[ms[0] for ms in self.groups.members]]
        tie = np.empty(self.G)
        tie[self.default_order] = np.arange(self.G) / max(self.G, 1)
        return self.order_from_keys(gs + 0.5 * tie)


def slice_order_optimally(problem: PartitionProblem, k: int, order: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Convenience: best bottleneck and node assignment for one group order (default: the groups' own order)."""
    sl = OrderSlicer(problem)
    res = sl.slice(sl.default_order if order is None else order, k)
    return res.bottleneck, sl.node_assignment(res.group_stage)
