"""Hypothesis strategies and brute force for small partitioning instances (shared by the partition tests)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st

from forgeflow.tasks.partition.cost import InvalidPlanError, validate_plan
from forgeflow.tasks.partition.problem import PartitionProblem


@st.composite
def small_problems(draw, max_nodes: int = 6, max_k: int = 4, with_memory: bool = True) -> PartitionProblem:
    """A random DAG (ids permuted so index order is not topological), costs on a 1/8 grid (exact float sums),
    optionally one merged co-location class and a memory cap no smaller than the largest class."""
    n = draw(st.integers(1, max_nodes))
    perm = draw(st.permutations(range(n)))
    edges = [(perm[i], perm[j]) for i in range(n) for j in range(i + 1, n) if draw(st.booleans()) and draw(st.booleans())]
    grid = st.integers(0, 40).map(lambda x: x / 8)
    w = [draw(grid) for _ in range(n)]
    c = [draw(st.integers(0, 16).map(lambda x: x / 8)) for _ in range(n)]
    m = [draw(st.integers(0, 8).map(float)) for _ in range(n)]
    classes = [(i,) for i in range(n)]
    if n >= 2 and draw(st.booleans()):
        a, b = draw(st.permutations(range(n)))[:2]
        classes = [(a, b)] + [(i,) for i in range(n) if i not in (a, b)]
    k = draw(st.integers(1, max_k))
    cap = None
    if with_memory and draw(st.booleans()):
        biggest = max(sum(m[i] for i in cl) for cl in classes)
        cap = float(max(biggest, 1.0) + draw(st.integers(0, 10)))
    return PartitionProblem.from_arrays(w, m, c, edges, k, classes=classes, mem_cap=cap, name="hyp")


def brute_force_optimum(problem: PartitionProblem, k: int | None = None) -> tuple[float, np.ndarray | None]:
    """Min bottleneck over every assignment of nodes to k stages that the validator accepts (inf if none)."""
    k = problem.k if k is None else k
    best, arg = np.inf, None
    for a in itertools.product(range(k), repeat=problem.n):
        try:
            b = validate_plan(problem, np.array(a, dtype=np.int64), k).bottleneck
        except InvalidPlanError:
            continue
        if b < best:
            best, arg = b, np.array(a)
    return best, arg


def diamond(k: int = 2, *, mem_cap: float | None = None, merge_bc: bool = False) -> PartitionProblem:
    """a -> b, a -> c, b -> d, c -> d; w = 1, 2, 3, 1 ms; c = 0.5, 0.25, 0.5, 0 ms; sizes 1."""
    classes = [(0,), (1, 2), (3,)] if merge_bc else None
    return PartitionProblem.from_arrays([1, 2, 3, 1], [1, 1, 1, 1], [0.5, 0.25, 0.5, 0.0],
                                        [(0, 1), (0, 2), (1, 3), (2, 3)], k, classes=classes, mem_cap=mem_cap,
                                        node_ids=["a", "b", "c", "d"], name="diamond")


@st.composite
def branchy_problems(draw, max_nodes: int = 7, max_k: int = 4) -> PartitionProblem:
    """Small cell-like DAGs: a source, 2-3 parallel branches of 1-2 nodes joining in a sink, optionally a skip from
    the source straight to the sink and a second cell fed by the first cell's sink and its source (cross-cell skip);
    costs on a 1/8 grid so float sums are exact."""
    edges: list[tuple[int, int]] = []
    n = 1  # node 0 = source
    src = 0
    sinks = []
    for _cell in range(draw(st.integers(1, 2))):
        ends = []
        for _b in range(draw(st.integers(2, 3))):
            length = draw(st.integers(1, 2))
            if n + length + 1 > max_nodes:
                break
            prev = src
            for _ in range(length):
                edges.append((prev, n))
                prev, n = n, n + 1
            ends.append(prev)
        if n + 1 > max_nodes or not ends:
            break
        sink = n
        n += 1
        edges += [(e, sink) for e in ends]
        if draw(st.booleans()):
            edges.append((src, sink))  # skip around the cell
        if sinks and draw(st.booleans()):
            edges.append((sinks[-1], sink))  # cross-cell skip from the cell before last
        sinks.append(src)
        src = sink
    edges = sorted(set(edges))
    grid = st.integers(0, 40).map(lambda x: x / 8)
    w = [draw(grid) for _ in range(n)]
    c = [draw(st.integers(0, 24).map(lambda x: x / 8)) for _ in range(n)]
    return PartitionProblem.from_arrays(w, [1.0] * n, c, edges, draw(st.integers(1, max_k)), name="branchy")
