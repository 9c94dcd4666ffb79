import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgeflow.tasks.partition.cost import InvalidPlanError, validate_plan
from forgeflow.tasks.partition.slicing import OrderSlicer
from tests.partition.dags import diamond, small_problems


def brute_force_slicing(sl: OrderSlicer, order: np.ndarray, k: int) -> float:
    G, best = sl.G, np.inf
    for r in range(min(k, G)):
        for cuts in itertools.combinations(range(1, G), r):
            bounds = [0, *cuts, G]
            gs = np.empty(G, dtype=np.int64)
            for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                gs[order[a:b]] = s
            try:
                best = min(best, validate_plan(sl.problem, sl.node_assignment(gs), k).bottleneck)
            except InvalidPlanError:
                pass
    return best


@settings(max_examples=80, deadline=None)
@given(small_problems(max_nodes=7), st.integers(0, 2**32 - 1))
def test_slicing_dp_equals_brute_force_over_the_same_order(problem, seed):
    sl = OrderSlicer(problem)
    order = sl.order_from_keys(np.random.default_rng(seed).random(sl.G))
    assert sl.is_topological(order)
    res = sl.slice(order, problem.k)
    expected = brute_force_slicing(sl, order, problem.k)
    if np.isinf(expected):
        assert np.isinf(res.bottleneck)
        return
    assert res.bottleneck == pytest.approx(expected, abs=1e-9)
    # the returned cut is a valid plan whose recomputed cost is the DP's value
    assert validate_plan(problem, sl.node_assignment(res.group_stage), problem.k).bottleneck == pytest.approx(expected)
    # best_per_k agrees and is non-increasing in k
    per_k = sl.best_per_k(order, problem.k)
    assert per_k[-1] == pytest.approx(expected)
    assert np.array_equal(per_k, np.minimum.accumulate(per_k))


def test_diamond_orders_by_hand():
    sl = OrderSlicer(diamond(2))
    g = sl.groups.group_of
    abcd = np.array([g[0], g[1], g[2], g[3]])
    acbd = np.array([g[0], g[2], g[1], g[3]])
    assert sl.slice(abcd, 2).bottleneck == pytest.approx(4.75)  # {a, b} | {c, d}
    assert sl.slice(acbd, 2).bottleneck == pytest.approx(5.0)  # {a, c} | {b, d} is the best cut of this order
    assert sl.slice(abcd, 1).bottleneck == pytest.approx(7.0)
    np.testing.assert_allclose(sl.best_per_k(acbd, 3), [7.0, 5.0, 4.0])  # a | c | b, d


def test_memory_cap_limits_the_blocks():
    sl = OrderSlicer(diamond(2, mem_cap=1.5))
    assert np.isinf(sl.slice(sl.default_order, 2).bottleneck)  # one node per stage needs 4 stages
    assert np.isfinite(sl.slice(sl.default_order, 4).bottleneck)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 12))
def test_banded_slicing_equals_the_full_matrix_pass(seed, k):
    # the band (block starts whose work fits the quick slicing's bottleneck) never drops the optimum
    from forgeflow.tasks.partition.cells import CellGraphSpec, cell_graph
    from forgeflow.tasks.partition.adapters import problem_from_graph

    rng = np.random.default_rng(seed)
    g = cell_graph(CellGraphSpec("amoeba", 2, width=8, resolution=8, blocks=3, link="10gbe", seed=seed % 7))
    sl = OrderSlicer(problem_from_graph(g, k=k))
    order = sl.order_from_keys(rng.random(sl.G))
    C = sl.block_costs(order)
    sl.band_min_entries = 0  # force the band on this small instance
    res = sl.slice(order, k, C)
    f = np.full(sl.G + 1, np.inf)
    f[0] = 0.0
    for _ in range(k):
        f = np.maximum(f[:, None], C).min(axis=0)
    assert res.bottleneck == pytest.approx(float(f[-1]), rel=1e-12)
    assert validate_plan(sl.problem, sl.node_assignment(res.group_stage), k).bottleneck == \
        pytest.approx(res.bottleneck, rel=1e-9)
