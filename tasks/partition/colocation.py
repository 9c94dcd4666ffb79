"""Groups of nodes that every feasible plan puts in one stage, and the stage cost over such groups.

Two nodes must share a stage when they are in one co-location class, and classes that lie on a cycle of the graph
contracted by classes must share a stage too (edges only run forward, so stage(g) <= ... <= stage(g) forces
equality; a node on a path between two nodes of one class is the simplest such cycle). Merging the strongly
connected components of the class graph gives "groups"; every plan is a plan over groups, and the contracted graph
over groups is acyclic. All formulations and lower bounds work on groups: fewer variables, and the group's own work
is a valid lower bound on any stage that holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from forgeflow.tasks.partition.problem import PartitionProblem


@dataclass(frozen=True)
class Groups:
    """The contraction of a problem onto its must-share-a-stage groups.

    ``group_of[v]`` is node v's group; ``members[g]`` its nodes; ``work[g]`` / ``size[g]`` the summed ``w`` / ``m``;
    ``edges`` the contracted DAG (g, h) with g != h, ``order`` a topological order of the groups.
    ``senders`` lists, for every node u with ``c[u] > 0`` and a successor outside its group, the pair
    ``(u, targets)`` where ``targets`` are the other groups that consume u's output (sorted, distinct).
    """

    problem: PartitionProblem
    group_of: np.ndarray
    members: tuple[tuple[int, ...], ...]
    work: np.ndarray
    size: np.ndarray
    edges: tuple[tuple[int, int], ...]
    order: tuple[int, ...]
    senders: tuple[tuple[int, tuple[int, ...]], ...]

    @property
    def count(self) -> int:
        return len(self.members)

    @cached_property
    def preds(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.count)]
        for g, h in self.edges:
            out[h].append(g)
        return out

    @cached_property
    def succs(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.count)]
        for g, h in self.edges:
            out[g].append(h)
        return out

    @cached_property
    def ancestors(self) -> list[int]:
        """Bitset (Python int) of each group's strict ancestors."""
        anc = [0] * self.count
        for g in self.order:
            for p in self.preds[g]:
                anc[g] |= anc[p] | (1 << p)
        return anc

    @cached_property
    def descendants(self) -> list[int]:
        """Bitset (Python int) of each group's strict descendants."""
        desc = [0] * self.count
        for g in reversed(self.order):
            for s in self.succs[g]:
                desc[g] |= desc[s] | (1 << s)
        return desc

    def stage_cost(self, stage_groups) -> float:
        """Cost (ms) of one stage made of the given groups: work + outgoing and incoming transfers, each counted once."""
        inside = np.zeros(self.count, dtype=bool)
        inside[list(stage_groups)] = True
        total = float(self.work[inside].sum())
        c = self.problem.c
        for u, targets in self.senders:
            if inside[self.group_of[u]]:
                if not all(inside[t] for t in targets):
                    total += float(c[u])
            elif any(inside[t] for t in targets):
                total += float(c[u])
        return total


def _strongly_connected_components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Components with more than one vertex of the directed graph on range(n) (iterative Kosaraju)."""
    out: list[list[int]] = [[] for _ in range(n)]
    rev: list[list[int]] = [[] for _ in range(n)]
    touched = set()
    for u, v in edges:
        out[u].append(v)
        rev[v].append(u)
        touched.update((u, v))
    seen: set[int] = set()
    finish: list[int] = []
    for root in sorted(touched):
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(out[root]))]
        while stack:
            u, it = stack[-1]
            for v in it:
                if v not in seen:
                    seen.add(v)
                    stack.append((v, iter(out[v])))
                    break
            else:
                stack.pop()
                finish.append(u)
    comp_of: dict[int, int] = {}
    comps: list[list[int]] = []
    for root in reversed(finish):
        if root in comp_of:
            continue
        comp_of[root] = len(comps)
        members, stack = [root], [root]
        while stack:
            u = stack.pop()
            for v in rev[u]:
                if v not in comp_of:
                    comp_of[v] = comp_of[root]
                    members.append(v)
                    stack.append(v)
        comps.append(members)
    return [c for c in comps if len(c) > 1]


def must_share_groups(problem: PartitionProblem) -> Groups:
    """Close the co-location classes under "a node between two nodes of one stage is in that stage"."""
    n = problem.n
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> bool:
        ra, rb = find(a), find(b)
        if ra == rb:
            return False
        parent[rb] = ra
        return True

    for cls in problem.classes:
        for v in cls[1:]:
            union(cls[0], v)

    succ = problem.successors()
    topo = problem.topological_order()
    # Stages are ordered and edges run forward, so groups on a cycle of the contracted graph share one stage
    # (g <= h <= g). A node between two nodes of one group closes such a cycle too, so merging the strongly
    # connected components of the class graph is the whole closure, and the result is acyclic.
    for comp in _strongly_connected_components(n, [(find(u), find(v)) for u, v in problem.edges
                                                    if find(u) != find(v)]):
        for r in comp[1:]:
            union(comp[0], r)

    root_index: dict[int, int] = {}
    group_of = np.empty(n, dtype=np.int64)
    members: list[list[int]] = []
    # number groups in topological order of their first member so group ids are stable and roughly ordered
    for v in topo:
        r = find(v)
        if r not in root_index:
            root_index[r] = len(members)
            members.append([])
        group_of[v] = root_index[r]
        members[root_index[r]].append(v)
    count = len(members)
    work = np.array([float(problem.w[list(ms)].sum()) for ms in members])
    size = np.array([float(problem.m[list(ms)].sum()) for ms in members])
    gedges = sorted({(int(group_of[u]), int(group_of[v])) for u, v in problem.edges if group_of[u] != group_of[v]})
    senders = []
    for u in range(n):
        if problem.c[u] <= 0:
            continue
        targets = sorted({int(group_of[v]) for v in succ[u] if group_of[v] != group_of[u]})
        if targets:
            senders.append((u, tuple(targets)))
    # groups were numbered in node-topological order of first members; a contracted edge may still point backwards
    # in that numbering, so compute a proper topological order of the contracted DAG.
    indeg = [0] * count
    gsucc: list[list[int]] = [[] for _ in range(count)]
    for g, h in gedges:
        gsucc[g].append(h)
        indeg[h] += 1
    ready = [g for g in range(count) if indeg[g] == 0]
    order: list[int] = []
    while ready:
        g = ready.pop()
        order.append(g)
        for h in gsucc[g]:
            indeg[h] -= 1
            if indeg[h] == 0:
                ready.append(h)
    assert len(order) == count, "merging strongly connected components left a cycle between groups"
    return Groups(problem, group_of, tuple(tuple(ms) for ms in members), work, size, tuple(gedges), tuple(order),
                  tuple(senders))
