"""The HiGHS formulations: the exact k-stage MIP equals brute force, and its plans are valid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from forgeflow.tasks.partition.colocation import must_share_groups
from forgeflow.tasks.partition.cost import validate_plan
from forgeflow.tasks.partition.mip import build_cheapest_stage_model, solve_exact_mip
from forgeflow.tasks.solver import SolverOptions, solve
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.status import SolveStatus
from tests.partition.dags import brute_force_optimum, diamond, small_problems


def test_diamond_optimum_by_hand():
    # k=2: {a, b} | {c, d}: stage 0 = 1 + 2 + a's output (0.5) + b's output (0.25) = 3.75;
    # stage 1 = 3 + 1 + a's input (0.5) + b's input (0.25) = 4.75.  {a} | {b, c, d} = 1.5 | 6.5;
    # {a, c} | {b, d} = 4 + 0.5 + 0.5 | 3 + 0.5 + 0.5 = 5.0 | 4.0; {a, b, c} | {d} = 6.75 -> 4.75 is the best.
    assignment, bound, status = solve_exact_mip(diamond(2), time_limit=10)
    assert status == SolveStatus.OPTIMAL
    assert bound.value == pytest.approx(4.75, abs=1e-5)
    assert validate_plan(diamond(2), assignment, 2).bottleneck == pytest.approx(4.75)
    # k=1: everything in one stage, no transfer at all
    _, bound1, _ = solve_exact_mip(diamond(1), time_limit=10)
    assert bound1.value == pytest.approx(7.0, abs=1e-5)


def test_colocation_forces_b_and_c_together():
    # b and c share a stage, so does anything between them (nothing here): best is {a} | {b, c, d} = 1.5 | 6.5
    # or {a, b, c} | {d} = 6 + 0.25 + 0.5 = 6.75, or all in one stage = 7.0
    _, bound, status = solve_exact_mip(diamond(2, merge_bc=True), time_limit=10)
    assert status == SolveStatus.OPTIMAL
    assert bound.value == pytest.approx(6.5, abs=1e-5)


def test_memory_cap_makes_instance_infeasible():
    p = diamond(2, mem_cap=1.5)  # each stage holds one node, 4 nodes, 2 stages
    assignment, bound, status = solve_exact_mip(p, time_limit=10)
    assert status == SolveStatus.INFEASIBLE and assignment is None and bound.value == math.inf


def test_convex_closure_pulls_in_the_node_between_a_class():
    # chain 0 -> 1 -> 2 with 0 and 2 in one class: 1 must join them
    p = PartitionProblem.from_arrays([1, 1, 1], [0, 0, 0], [1, 1, 1], [(0, 1), (1, 2)], 3, classes=[(0, 2), (1,)])
    groups = must_share_groups(p)
    assert groups.count == 1 and groups.members[0] == (0, 1, 2)


def test_interleaved_classes_merge_into_one_group():
    # classes {a, d} and {b, c} with a -> b and c -> d: stage(a) <= stage(b) = stage(c) <= stage(d) = stage(a),
    # so all four share a stage although no single node lies between two nodes of one class
    p = PartitionProblem.from_arrays([1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [(0, 1), (2, 3)], 2,
                                     classes=[(0, 3), (1, 2)])
    groups = must_share_groups(p)
    assert groups.count == 1 and groups.edges == ()
    _, bound, status = solve_exact_mip(p, time_limit=10)
    assert status == SolveStatus.OPTIMAL and bound.value == pytest.approx(4.0, abs=1e-5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(max_nodes=6, max_k=3))
def test_exact_mip_equals_brute_force(problem):
    best, _ = brute_force_optimum(problem)
    assignment, bound, status = solve_exact_mip(problem, time_limit=20)
    if math.isinf(best):
        assert status == SolveStatus.INFEASIBLE
        return
    assert status == SolveStatus.OPTIMAL
    assert bound.value <= best + 1e-6
    assert bound.value == pytest.approx(best, rel=1e-5, abs=1e-6)
    assert validate_plan(problem, assignment, problem.k).bottleneck == pytest.approx(best, abs=1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(max_nodes=6, max_k=1))
def test_cheapest_stage_model_is_exact_for_one_group(problem):
    # with a single group anchored, the model's optimum is the cheapest convex stage containing it; for a graph
    # whose nodes all share a stage (k = 1) that is the whole graph's work (no transfers)
    groups = must_share_groups(problem)
    res = solve(build_cheapest_stage_model(groups, 0), SolverOptions(time_limit=10))
    assert res.status == SolveStatus.OPTIMAL
    assert res.dual_bound <= float(problem.w.sum()) + 1e-6
    assert res.dual_bound >= float(groups.work[0]) - 1e-6
