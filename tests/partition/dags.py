"""Hypothesis strategies and brute force for small partitioning instances (shared by the partition tests)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import strategies as st

from tasks.partition.cost import InvalidPlanError, validate_plan
from tasks.partition.problem import PartitionProblem


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
