import numpy as np
import pytest
from hypothesis import given, settings

from forgeflow.tasks.partition.cost import validate_plan
from forgeflow.tasks.partition.ideals import solve_ideals_dp
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.slicing import OrderSlicer
from forgeflow.tasks.partition.status import SolveStatus
from tests.partition.dags import brute_force_optimum, diamond, small_problems


@settings(max_examples=60, deadline=None)
@given(small_problems(max_nodes=5, max_k=3))
def test_ideals_dp_equals_brute_force_over_all_assignments(problem):
    expected, _ = brute_force_optimum(problem)
    res = solve_ideals_dp(problem)
    assert res.status is SolveStatus.OPTIMAL
    if np.isinf(expected):
        assert np.isinf(res.best[-1]) and res.assignment is None
        return
    assert res.best[-1] == pytest.approx(expected, abs=1e-9)
    assert validate_plan(problem, res.assignment).bottleneck == pytest.approx(expected, abs=1e-9)
    # at most t stages for every t <= k, non-increasing
    assert np.array_equal(res.best, np.minimum.accumulate(res.best))


@settings(max_examples=40, deadline=None)
@given(small_problems(max_nodes=7))
def test_ideals_dp_never_worse_than_any_order(problem):
    sl = OrderSlicer(problem)
    res = solve_ideals_dp(problem)
    upper = sl.slice(sl.default_order, problem.k).bottleneck
    assert res.best[-1] <= upper + 1e-9
    # a finite upper bound prunes nothing that matters
    if np.isfinite(upper):
        pruned = solve_ideals_dp(problem, upper_bound=upper)
        assert pruned.best[-1] == pytest.approx(res.best[-1])


def test_diamond_optima_by_hand():
    res = solve_ideals_dp(diamond(3), 3)
    np.testing.assert_allclose(res.best, [7.0, 4.75, 4.0])
    assert solve_ideals_dp(diamond(2, merge_bc=True)).best[-1] == pytest.approx(6.5)  # a | b, c, d
    assert np.isinf(solve_ideals_dp(diamond(2, mem_cap=1.5)).best[-1])


def test_ideal_cap_and_time_limit_are_reported_not_guessed():
    # 12 independent nodes have 4096 ideals
    wide = PartitionProblem.from_arrays(np.ones(12), np.ones(12), np.zeros(12), [], 3)
    res = solve_ideals_dp(wide, max_ideals=1000)
    assert res.status is SolveStatus.NOT_RUN and res.assignment is None
    res = solve_ideals_dp(wide, time_limit=0.0)
    assert res.status is SolveStatus.TIME_LIMIT and res.assignment is None
    assert solve_ideals_dp(wide).best[-1] == pytest.approx(4.0)


@settings(max_examples=25, deadline=None)
@given(small_problems(max_nodes=6, max_k=3))
def test_mip_optimum_equals_ideals_dp_optimum(problem):
    from forgeflow.tasks.partition.mip import solve_exact_mip

    dp = solve_ideals_dp(problem).best[-1]
    assignment, bound, status = solve_exact_mip(problem, 20.0)
    if np.isinf(dp):
        assert status is SolveStatus.INFEASIBLE and assignment is None
        return
    assert status is SolveStatus.OPTIMAL
    assert validate_plan(problem, assignment).bottleneck == pytest.approx(dp, abs=1e-6)
    assert bound.value <= dp + 1e-9


@settings(max_examples=60, deadline=None)
@given(small_problems(max_nodes=6, max_k=4))
def test_layered_and_all_pairs_schedules_agree(problem):
    sl = OrderSlicer(problem)
    upper = sl.slice(sl.default_order, problem.k).bottleneck
    if not np.isfinite(upper):
        return
    a = solve_ideals_dp(problem, upper_bound=upper, schedule="all")
    b = solve_ideals_dp(problem, upper_bound=upper, schedule="layered")
    np.testing.assert_allclose(a.best, b.best)
    assert validate_plan(problem, b.assignment).bottleneck == pytest.approx(b.best[-1])
    exact, _ = brute_force_optimum(problem) if problem.n <= 5 else (a.best[-1], None)
    assert b.best[-1] == pytest.approx(exact)
