import itertools

import numpy as np
from hypothesis import given, settings, strategies as st

from forgeflow.tasks.supernet.pareto import (crowding_distance, hypervolume_2d, hypervolume_improvement_2d, non_dominated_mask,
                                   non_dominated_ranks)


def brute_mask(f):
    n = len(f)
    return np.array([not any(np.all(f[j] <= f[i]) and np.any(f[j] < f[i]) for j in range(n)) for i in range(n)],
                    dtype=bool)


def grid_hv(points, ref):
    """Area by inclusion-exclusion over all subsets (exact for a handful of points)."""
    pts = [p for p in points if p[0] < ref[0] and p[1] < ref[1]]
    total = 0.0
    for r in range(1, len(pts) + 1):
        for sub in itertools.combinations(pts, r):
            corner = np.max(np.array(sub), axis=0)
            total += (-1) ** (r + 1) * (ref[0] - corner[0]) * (ref[1] - corner[1])
    return total


def test_hypervolume_hand_computed():
    # staircase (1,3), (2,2), (3,1) with reference (4,4): 3*1 + 2*1 + 1*1 columns -> 1*3 + 1*2 + 1*1 ... = 6
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume_2d(pts, [4.0, 4.0]) == 6.0
    # a dominated point and one outside the reference change nothing
    more = np.vstack([pts, [[3.0, 3.0], [5.0, 0.0]]])
    assert hypervolume_2d(more, [4.0, 4.0]) == 6.0
    assert hypervolume_2d(np.zeros((0, 2)), [1.0, 1.0]) == 0.0


pts2 = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=0, max_size=7)


@settings(max_examples=150, deadline=None)
@given(pts2, pts2)
def test_hypervolume_and_improvement_match_inclusion_exclusion(front, cands):
    f = np.array(front, dtype=float).reshape(-1, 2)
    c = np.array(cands, dtype=float).reshape(-1, 2)
    ref = np.array([6.5, 6.0])
    assert np.isclose(hypervolume_2d(f, ref) if len(f) else 0.0, grid_hv(list(f), ref))
    if len(c):
        base = grid_hv(list(f), ref)
        expect = [grid_hv(list(f) + [p], ref) - base for p in c]
        assert np.allclose(hypervolume_improvement_2d(f, c, ref), expect)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=12))
def test_non_dominated_mask_matches_brute_force(points):
    f = np.array(points, dtype=float)
    assert np.array_equal(non_dominated_mask(f), brute_mask(f))
    ranks = non_dominated_ranks(f)
    # every point of rank r > 0 is dominated by some point of rank r - 1
    for i in np.flatnonzero(ranks > 0):
        prev = f[ranks == ranks[i] - 1]
        assert any(np.all(q <= f[i]) and np.any(q < f[i]) for q in prev)


def test_three_objective_mask_and_crowding():
    f = np.array([[0, 0, 1], [1, 1, 1], [0, 1, 0], [2, 2, 2]], dtype=float)
    assert non_dominated_mask(f).tolist() == [True, False, True, False]
    d = crowding_distance(np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]]))
    assert np.isinf(d[0]) and np.isinf(d[3]) and np.allclose(d[1:3], [4 / 3, 4 / 3])
