"""Every lower bound is at most the brute-force optimum, and the strong ones reach it on small instances."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeflow.tasks.partition.bounds import (bottleneck_guess_bound, best_lower_bound, cheapest_stage_bound,
                                    combinatorial_lower_bound)
from forgeflow.tasks.partition.cost import validate_plan
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.status import Bound, SolveStatus
from tests.partition.dags import brute_force_optimum, diamond, small_problems

TOL = 1e-9


def test_combinatorial_bound_by_hand():
    # diamond: total work 7 over k=2 -> 3.5; heaviest node c = 3; with 2 stages the second (no source) receives
    # at least the cheapest input set (b's or c's: 0.5) and the first (no sink) ships at least the cheapest output
    # set (b's: 0.25): (7 + 0.5 + 0.25) / 2 = 3.875 (one stage: 7)
    b = combinatorial_lower_bound(diamond(2))
    assert isinstance(b, Bound) and b.method == "combinatorial" and b.status == SolveStatus.OPTIMAL
    assert b.detail["total_over_k"] == pytest.approx(3.5)
    assert b.value == pytest.approx(3.875) and b.value <= 4.75  # the optimum
    assert combinatorial_lower_bound(diamond(4)).value == pytest.approx(3.0)
    # b and c share a stage: the class weighs 5
    assert combinatorial_lower_bound(diamond(4, merge_bc=True)).value == pytest.approx(5.0)


def test_combinatorial_bound_flags_memory_infeasibility():
    b = combinatorial_lower_bound(diamond(2, mem_cap=1.5))  # 4 units of size, 2 stages of 1.5
    assert b.status == SolveStatus.INFEASIBLE and b.value == math.inf


def test_combinatorial_bound_flags_a_forced_group_above_the_cap():
    # classes {a, d} and {b, c} interleave (a -> b, c -> d), so all four share a stage: size 4 > cap 3,
    # although each class alone (size 2) fits
    p = PartitionProblem.from_arrays([1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [(0, 1), (2, 3)], 4,
                                     classes=[(0, 3), (1, 2)], mem_cap=3.0)
    b = combinatorial_lower_bound(p)
    assert b.status == SolveStatus.INFEASIBLE and b.value == math.inf and "must share a stage" in b.detail["reason"]


def test_cheapest_stage_bound_counts_unavoidable_transfers():
    # a heavy node h (w=10) between a source s and a sink t, transfers of 4 ms each way, k large.
    # Stage with h alone: 10 + 4 (s's output in) + 4 (h's output out) = 18; with s: 10 + 1 + 4 = 15;
    # with s and t: 10 + 1 + 1 = 12 and no transfer at all. So the cheapest stage holding h costs 12 and, since
    # total work is 12, the optimum at any k is 12 while total/k and the heaviest node only give 10.
    p = PartitionProblem.from_arrays([1, 10, 1], [0, 0, 0], [4, 4, 0], [(0, 1), (1, 2)], 8)
    assert combinatorial_lower_bound(p).value == pytest.approx(10.0)
    b = cheapest_stage_bound(p, time_limit=10)
    assert b.status == SolveStatus.OPTIMAL and b.value == pytest.approx(12.0, abs=1e-5)
    assert brute_force_optimum(p.with_k(3))[0] == pytest.approx(12.0)


def test_bottleneck_guess_proves_the_optimum_and_flags_a_better_plan():
    p = diamond(2)  # optimum 4.75
    below, _, _ = bottleneck_guess_bound(p, 4.7, time_limit=10)
    assert below.status == SolveStatus.INFEASIBLE and below.value == pytest.approx(4.7, abs=1e-5)
    assert below.value <= 4.7
    above, plan, objective = bottleneck_guess_bound(p, 6.0, time_limit=10)
    assert above.status == SolveStatus.OPTIMAL and objective == pytest.approx(4.75)
    assert validate_plan(p, plan, 2).bottleneck == pytest.approx(4.75)
    assert above.value <= 4.75


def test_best_lower_bound_reports_method_and_improved_plan():
    p = diamond(2)
    b = best_lower_bound(p, upper_bound=4.75, time_limit=10)
    assert b.status == SolveStatus.OPTIMAL and 4.75 * (1 - 1e-4) <= b.value <= 4.75
    assert b.method == "mip_bottleneck_guess"
    assert [m["method"] for m in b.detail["per_method"]][:2] == ["combinatorial", "cheapest_stage"]
    # a poor upper bound: the guessing MIP finds the optimum itself and hands the plan back
    b2 = best_lower_bound(p, upper_bound=7.0, time_limit=10)
    assert b2.improved.bottleneck == pytest.approx(4.75)
    assert validate_plan(p, np.array(b2.improved.assignment), 2).bottleneck == pytest.approx(4.75)
    assert b2.status == SolveStatus.OPTIMAL and b2.value <= 4.75


def test_best_lower_bound_with_an_executor_matches_serial():
    p = diamond(2)
    with ThreadPoolExecutor(2) as ex:
        b = best_lower_bound(p, upper_bound=5.5, time_limit=10, executor=ex)
    assert b.status == SolveStatus.OPTIMAL and 4.75 * (1 - 1e-4) <= b.value <= 4.75


@st.composite
def transfer_heavy_problems(draw) -> PartitionProblem:
    """Operator-graph-like instances: transfers up to 8x the heaviest compute, classes of up to 3 nodes, k up to
    5 (more stages than the graph can use), so the cheapest-stage bound and the guessing MIP both matter."""
    n = draw(st.integers(2, 6))
    perm = draw(st.permutations(range(n)))
    edges = [(perm[i], perm[j]) for i in range(n) for j in range(i + 1, n) if draw(st.integers(0, 2)) == 0]
    w = [draw(st.integers(0, 8)) / 4 for _ in range(n)]
    c = [draw(st.integers(0, 64)) / 4 for _ in range(n)]
    members = draw(st.permutations(range(n)))
    size = draw(st.integers(1, min(3, n)))
    classes = [tuple(members[:size])] + [(i,) for i in members[size:]]
    k = draw(st.integers(1, 5 if n <= 5 else 4))
    return PartitionProblem.from_arrays(w, [1.0] * n, c, edges, k, classes=classes, name="heavy")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transfer_heavy_problems())
def test_bounds_are_valid_and_tight_when_transfers_dominate(problem):
    best, _ = brute_force_optimum(problem)
    assert cheapest_stage_bound(problem, time_limit=10).value <= best + TOL
    b = best_lower_bound(problem, upper_bound=best, time_limit=10)
    assert b.value <= best + TOL and b.status == SolveStatus.OPTIMAL


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(max_nodes=6, max_k=4), st.sampled_from([1.0, 1.0, 1.3, math.inf]))
def test_every_bound_is_at_most_the_optimum(problem, slack):
    best, _ = brute_force_optimum(problem)
    if math.isinf(best):
        # no plan at all: a bound may say so (inf) but must not crash
        b = best_lower_bound(problem, upper_bound=None, time_limit=10)
        assert b.status in (SolveStatus.INFEASIBLE, SolveStatus.FEASIBLE, SolveStatus.TIME_LIMIT)
        return
    assert combinatorial_lower_bound(problem).value <= best + TOL
    assert cheapest_stage_bound(problem, time_limit=10).value <= best + TOL
    ub = best * slack if math.isfinite(slack) else None
    b = best_lower_bound(problem, upper_bound=ub, time_limit=10)
    assert b.value <= best + TOL
    for m in b.detail["per_method"]:
        assert m["value"] <= best + TOL, m
    # with a correct upper bound the optimum is always proven on instances this small
    assert b.status == SolveStatus.OPTIMAL
    assert b.value >= best * (1 - 1e-4) - 1e-5


def test_guess_work_ships_to_dask_workers():
    # the guessing solves go to a Dask client exactly as to a thread pool; the function and problem must pickle
    import pickle

    from distributed import Client, LocalCluster

    p = diamond(2)
    assert pickle.loads(pickle.dumps(p)).edges == p.edges
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        b = best_lower_bound(p, upper_bound=6.0, time_limit=20, executor=client)
    assert b.status == SolveStatus.OPTIMAL and 4.75 * (1 - 1e-4) <= b.value <= 4.75
    assert b.improved.bottleneck == pytest.approx(4.75)


def test_unknown_upper_bound_runs_the_plain_model():
    b = best_lower_bound(diamond(2), upper_bound=None, time_limit=10)
    assert b.status == SolveStatus.OPTIMAL and b.improved.bottleneck == pytest.approx(4.75)
    assert 4.75 * (1 - 1e-4) <= b.value <= 4.75


def test_guesses_close_a_small_gap_first_and_probe_near_the_bound_on_a_wide_one():
    from forgeflow.tasks.partition.bounds import CLOSING_GAP, _guess_caps

    closing = 10.5 * (1 - CLOSING_GAP)
    assert _guess_caps(10.0, 10.5, 1) == [closing]  # gap 5 %: try to prove the plan optimal
    assert _guess_caps(10.0, 100.0, 1) == [pytest.approx(10.2)]  # gap 10x: look for a plan near the bound
    caps = _guess_caps(10.0, 100.0, 4)
    assert caps[:2] == [pytest.approx(10.2), 100.0 * (1 - CLOSING_GAP)] and len(caps) == 4
    assert all(10.0 < c < 100.0 for c in caps)
    assert _guess_caps(10.0, 10.0, 2) == []  # already closed
    assert _guess_caps(10.0, math.inf, 1) == [math.inf]  # no plan: the plain model
    assert _guess_caps(0.0, 8.0, 4) == [8.0 * (1 - CLOSING_GAP), pytest.approx(8.0 / 1.1), 4.0]  # nothing proven


def test_guesses_climb_a_ladder_from_the_bound_when_the_closing_guess_decides_nothing(monkeypatch):
    """A guess oracle that refutes every cap up to 4.6 at once and decides nothing above it (as HiGHS does on wide
    graphs at many stages): the serial search must not stop after the undecided closing guess, but climb from the
    proven bound to within the ladder's tolerance of 4.6."""
    import forgeflow.tasks.partition.bounds as bounds_mod
    from forgeflow.tasks.solver import shave_bound

    calls = []

    def oracle(problem, cap, time_limit, *, floor=0.0, **_):
        calls.append(cap)
        if cap <= 4.6:
            return Bound(shave_bound(cap), "mip_bottleneck_guess", SolveStatus.INFEASIBLE, 0.0, {"cap": cap}), \
                None, math.inf
        return Bound(floor, "mip_bottleneck_guess", SolveStatus.TIME_LIMIT, 0.0, {"cap": cap}), None, math.inf

    monkeypatch.setattr(bounds_mod, "bottleneck_guess_bound", oracle)
    monkeypatch.setattr(bounds_mod, "cheapest_stage_bound",
                        lambda p, t, **_: Bound(0.0, "cheapest_stage", SolveStatus.OPTIMAL, 0.0, {}))
    p = diamond(2)  # combinatorial bound 3.875, plan 4.75
    b = best_lower_bound(p, upper_bound=4.75, time_limit=30)
    closing = 4.75 * (1 - bounds_mod.CLOSING_GAP)
    assert closing in calls and calls.index(closing) < len(calls) - 2  # the search went on after it
    assert b.method == "mip_bottleneck_guess"
    assert 4.6 * (1 - 1e-3) <= b.value <= 4.6  # climbed from 3.875 to the oracle's threshold
    assert all(c > 3.875 for c in calls)
    from forgeflow.tasks.partition.bounds import _ladder_caps
    assert _ladder_caps(10.0, 10.5, 0.01, 1) == [pytest.approx(10.1)]
    assert _ladder_caps(10.0, 10.05, 0.01, 1) == [10.05 * (1 - bounds_mod.CLOSING_GAP)]  # never past the closing
    assert _ladder_caps(10.0, 10.5, 0.04, 4) == [pytest.approx(c) for c in (10.1, 10.2, 10.3, 10.4)]
    assert _ladder_caps(10.0, 10.0, 0.01, 2) == []


def test_guesses_stop_once_the_refuted_closing_guess_proves_the_plan(monkeypatch):
    """A refuted closing guess, shaved for solver tolerances, sits just below the closing cap: the search must stop
    there (the plan is proven within PROVEN_RTOL), not re-refute the same cap until the time limit."""
    import forgeflow.tasks.partition.bounds as bounds_mod
    from forgeflow.tasks.solver import shave_bound

    calls = []

    def oracle(problem, cap, time_limit, *, floor=0.0, **_):
        calls.append(cap)
        return Bound(shave_bound(cap), "mip_bottleneck_guess", SolveStatus.INFEASIBLE, 0.0, {"cap": cap}), None, \
            math.inf

    monkeypatch.setattr(bounds_mod, "bottleneck_guess_bound", oracle)
    b = best_lower_bound(diamond(2), upper_bound=4.75, time_limit=30)
    assert b.status == SolveStatus.OPTIMAL and len(calls) <= 12
