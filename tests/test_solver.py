"""The shared HiGHS adapter: model building, the one status mapping, the outcome's bound and gap."""

from __future__ import annotations

import math

import highspy
import numpy as np
import pytest

from forgeflow.tasks.solver import (INF, LinearModel, SolverOptions, SolveStatus, gap_closed, relative_gap, shave_bound, solve,
                          status_of)


def knapsack(values, weights, cap) -> LinearModel:
    """max sum v x s.t. sum w x <= cap, x binary (as a minimisation of -v x)."""
    m = LinearModel()
    cols = m.add_vars(len(values), 0.0, 1.0, [-v for v in values], integer=True)
    m.add_row(cols, weights, -INF, cap)
    return m


def test_small_mip_is_solved_to_optimality_with_its_bound():
    out = solve(knapsack([10, 13, 7, 8], [5, 7, 4, 3], 10))
    assert out.status is SolveStatus.OPTIMAL
    assert out.objective == pytest.approx(-21.0)  # items 1 and 3 (13 + 8, weight 10)
    assert out.dual_bound <= out.objective + 1e-9
    assert out.gap <= 1e-6
    assert np.round(out.solution).tolist() == [0, 1, 0, 1]
    assert out.detail["highs_status"] == "Optimal"


def test_offset_and_lp_dual_bound():
    m = LinearModel()
    x = m.add_var(0.0, 4.0, cost=2.0)
    y = m.add_var(0.0, 4.0, cost=3.0)
    m.add_row([x, y], [1.0, 1.0], 5.0, INF)
    m.offset = 1.5
    out = solve(m)
    assert out.status is SolveStatus.OPTIMAL
    assert out.objective == pytest.approx(2 * 4 + 3 * 1 + 1.5)
    assert out.dual_bound == out.objective and out.gap == 0.0
    assert m.evaluate(out.solution) == pytest.approx(out.objective)


def test_infeasible_model():
    m = LinearModel()
    x = m.add_var(0.0, 1.0, integer=True)
    m.add_row([x], [1.0], 2.0, INF)
    out = solve(m)
    assert out.status is SolveStatus.INFEASIBLE
    assert out.solution is None and out.dual_bound == math.inf and out.objective == math.inf


def test_iteration_and_time_limits_map_to_the_same_status():
    """Both HiGHS work limits are TIME_LIMIT (quantize and partition used to disagree on the iteration limit)."""
    M = highspy.HighsModelStatus
    assert status_of(M.kTimeLimit, True) is SolveStatus.TIME_LIMIT
    assert status_of(M.kIterationLimit, False) is SolveStatus.TIME_LIMIT
    assert status_of(M.kInterrupt, True) is SolveStatus.FEASIBLE
    assert status_of(M.kUnknown, True) is SolveStatus.FEASIBLE
    assert status_of(M.kUnknown, False) is SolveStatus.ERROR
    # a real LP stopped by its simplex iteration limit
    rng = np.random.default_rng(0)
    m = LinearModel()
    cols = m.add_vars(30, 0.0, 1.0, -rng.random(30))
    for _ in range(20):
        m.add_row(cols, rng.random(30), -INF, 3.0)
    out = solve(m, SolverOptions(extra={"simplex_iteration_limit": 1}))
    assert out.detail["highs_status"] == "Iteration limit reached"
    assert out.status is SolveStatus.TIME_LIMIT
    assert out.dual_bound == -math.inf  # an LP stopped early proves nothing


def test_stop_callback_ends_the_solve_with_a_valid_bound():
    rng = np.random.default_rng(1)
    n = 60
    m = knapsack(rng.integers(10, 100, n).tolist(), rng.integers(10, 100, n).tolist(), 1000)
    out = solve(m, SolverOptions(mip_rel_gap=0.0), stop=lambda: True)
    assert out.status in (SolveStatus.FEASIBLE, SolveStatus.OPTIMAL)
    if out.has_solution and math.isfinite(out.dual_bound):
        assert out.dual_bound <= out.objective + 1e-9


def test_gap_and_shave():
    assert relative_gap(10.0, 10.0) == 0.0
    assert relative_gap(10.0, 9.0) == pytest.approx(0.1)
    assert relative_gap(10.0, -math.inf) == math.inf
    assert gap_closed(1.0, 1.0 - 1e-7) and not gap_closed(1.0, 0.99)
    assert shave_bound(100.0) < 100.0 and shave_bound(100.0) > 100.0 - 1e-4
    assert shave_bound(0.0) == 0.0 and shave_bound(math.inf) == math.inf
