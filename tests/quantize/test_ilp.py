"""The allocation ILP against brute force, hand-solved fixtures, and its error messages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeflow.tasks.errors import InfeasibleError
from forgeflow.tasks.solver import SolveStatus
from forgeflow.tasks.quantize.errors import BudgetInfeasibleError, QuantizeError, UnknownLayerError
from forgeflow.tasks.quantize.hawq import hawq_case, hawq_objective, hawq_problem
from forgeflow.tasks.quantize.ilp import smallest_achievable, solve_allocation
from forgeflow.tasks.quantize.problem import AllocationProblem


def brute_force(problem: AllocationProblem) -> float | None:
    best = None
    for combo in itertools.product(problem.bits, repeat=problem.n):
        if problem.plan_is_admissible(combo, rel_tol=0.0):
            obj = problem.plan_totals(combo)["objective"]
            best = obj if best is None else min(best, obj)
    return best


def tiny() -> AllocationProblem:
    # three layers, widths 4/8; 8 bits costs 0 sensitivity, 4 bits costs (a, b, c)
    return AllocationProblem(
        layers=("conv1", "conv2", "fc"), bits=(4, 8),
        cost=np.array([[5.0, 0.0], [1.0, 0.0], [3.0, 0.0]]),
        size_bytes=np.array([[10.0, 20.0], [40.0, 80.0], [20.0, 40.0]]),
        bops=np.array([[16.0, 64.0], [16.0, 64.0], [16.0, 64.0]]),
    )


def test_hand_solved_size_budget():
    # all-8 = 140 bytes; budget 110 forces >= 30 bytes saved: conv2 at 4 bits saves 40 at cost 1 (best);
    # fc+conv1 would save 30 at cost 8
    a = solve_allocation(tiny().with_budgets(size_bytes=110))
    assert a.status == SolveStatus.OPTIMAL
    assert dict(a.bits) == {"conv1": 8, "conv2": 4, "fc": 8}
    assert a.objective == pytest.approx(1.0) and a.dual_bound == pytest.approx(1.0)
    assert a.totals["size_bytes"] == pytest.approx(100.0)


def test_ties_and_pins_change_the_optimum():
    # tie conv2 with fc: saving 30 bytes now needs conv1+? -> conv1 alone saves 10; conv2+fc save 60 at cost 4
    p = tiny().with_budgets(size_bytes=110)
    p = AllocationProblem(**{**p.__dict__, "ties": (("conv2", "fc"),)})
    a = solve_allocation(p)
    assert dict(a.bits) == {"conv1": 8, "conv2": 4, "fc": 4} and a.objective == pytest.approx(4.0)
    p2 = AllocationProblem(**{**tiny().with_budgets(size_bytes=110).__dict__, "pinned": {"conv2": 8}})
    a2 = solve_allocation(p2)
    assert dict(a2.bits) == {"conv1": 4, "conv2": 8, "fc": 4} and a2.objective == pytest.approx(8.0)


def test_several_budgets_at_once():
    p = tiny().with_budgets(size_bytes=120, bops=150)  # bops forces two layers to 4 bits
    a = solve_allocation(p)
    assert a.totals["bops"] <= 150 and a.totals["size_bytes"] <= 120
    assert a.objective == pytest.approx(brute_force(p))


@st.composite
def problems(draw):
    n = draw(st.integers(1, 5))
    bits = (2, 3, 4, 8, 32)[: draw(st.integers(2, 5))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = rng.integers(1, 100, size=n).astype(float)
    macs = rng.integers(1, 100, size=n).astype(float)
    sens = rng.random(n) * 10
    b = np.array(bits, dtype=float)
    cost = sens[:, None] * (2.0 ** (-2 * b))[None, :] * rng.uniform(0.5, 2.0, size=(n, len(bits)))
    cost[:, b == 32] = 0.0
    size = params[:, None] * b[None, :] / 8
    bops = macs[:, None] * b[None, :] * 8
    lat = rng.uniform(0.1, 1.0, size=(n, len(bits))) * b[None, :] / 8
    names = tuple(f"l{i}" for i in range(n))
    ties = ()
    if n >= 2 and draw(st.booleans()):
        ties = ((names[0], names[-1]),)
    pinned = {names[1]: bits[-1]} if n >= 3 and draw(st.booleans()) else {}
    budgets = {}
    for r, t in (("size_bytes", size), ("bops", bops), ("latency_ms", lat)):
        if draw(st.booleans()):
            lo, hi = t.min(axis=1).sum(), t.max(axis=1).sum()
            budgets[r] = float(lo + draw(st.floats(0.0, 1.0)) * (hi - lo))
    return AllocationProblem(names, bits, cost, size, bops, lat, ties=ties, pinned=pinned, budgets=budgets)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_optimum_equals_brute_force(problem):
    best = brute_force(problem)
    if best is None:
        with pytest.raises(InfeasibleError):
            solve_allocation(problem)
        return
    a = solve_allocation(problem)
    assert a.status == SolveStatus.OPTIMAL
    assert problem.plan_is_admissible(a.bits)
    assert a.objective == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert a.dual_bound <= a.objective + 1e-9


def test_unknown_layer_in_tie_is_one_clear_error():
    p = AllocationProblem(**{**tiny().__dict__, "ties": (("conv2", "conv9"),)})
    with pytest.raises(UnknownLayerError, match="unknown layer.*'conv9'"):
        solve_allocation(p)
    p = AllocationProblem(**{**tiny().__dict__, "pinned": {"head": 8}})
    with pytest.raises(UnknownLayerError, match="'head'"):
        solve_allocation(p)


def test_infeasible_budget_states_the_smallest_achievable_value():
    p = tiny().with_budgets(size_bytes=50)  # all-4-bit is 70 bytes
    with pytest.raises(BudgetInfeasibleError, match=r"model size budget 50 bytes is infeasible: .* 70 bytes") as e:
        solve_allocation(p)
    assert e.value.smallest == pytest.approx(70.0) and e.value.resource == "size_bytes"
    assert smallest_achievable(p, "size_bytes") == pytest.approx(70.0)
    pinned = AllocationProblem(**{**p.__dict__, "pinned": {"conv2": 8}})
    with pytest.raises(BudgetInfeasibleError, match="110 bytes"):
        solve_allocation(pinned)


def test_jointly_infeasible_budgets_report_each_under_the_others():
    # size <= 20 needs both layers at 4 bits, latency <= 2 needs both at 8 bits: each alone is feasible
    p = AllocationProblem(
        layers=("a", "b"), bits=(4, 8), cost=np.zeros((2, 2)),
        size_bytes=np.array([[10.0, 20.0], [10.0, 20.0]]),
        bops=np.array([[1.0, 1.0], [1.0, 1.0]]),
        latency_ms=np.array([[2.0, 1.0], [2.0, 1.0]]),  # 4 bits slower than 8 here (e.g. no int4 kernel)
        budgets={"size_bytes": 20.0, "latency_ms": 2.0})
    with pytest.raises(BudgetInfeasibleError, match="cannot be met together.*smallest achievable model size is 40 bytes.*latency is 4 ms"):
        solve_allocation(p)


def test_bad_inputs_are_rejected():
    with pytest.raises(QuantizeError, match="pinned to 5 bits"):
        solve_allocation(AllocationProblem(**{**tiny().__dict__, "pinned": {"fc": 5}}))
    with pytest.raises(QuantizeError, match="no per-layer latency table"):
        solve_allocation(tiny().with_budgets(latency_ms=1.0))
    with pytest.raises(QuantizeError, match="shape"):
        solve_allocation(AllocationProblem(**{**tiny().__dict__, "cost": np.zeros((2, 2))}))
    tied_pins = AllocationProblem(**{**tiny().__dict__, "ties": (("conv1", "fc"),), "pinned": {"conv1": 4, "fc": 8}})
    with pytest.raises(QuantizeError, match="pinned to different widths"):
        solve_allocation(tied_pins)


def test_hawq_format_problem_matches_hand_computed_case():
    # two layers in HAWQ's file format; size budget half-way between all-4 and all-8
    entry = {"layer_names": ["a", "b"], "ties": [],
             "layers": {"Hutchinson_trace": [1.0, 0.1], "delta_weights_4bit_square": [2.0, 3.0],
                        "delta_weights_8bit_square": [0.1, 0.2], "parameters": [1.0, 1.0], "bops": [1.0, 1.0],
                        "latency_int4": [0.1, 0.1], "latency_int8": [0.2, 0.2]}}
    p = hawq_case(hawq_problem(entry, "toy"), "modelsize_0.5")
    a = solve_allocation(p)
    # one layer can be 8-bit: 'a' gains 1*(2.0-0.1)=1.9, 'b' gains 0.1*2.8=0.28
    assert a.bits_in_order(p.layers) == [8, 4]
    assert hawq_objective(p, a.objective) == pytest.approx(1.0 * (0.1 - 2.0))


def test_pareto_sweep_over_an_executor_matches_serial_and_reports_infeasible_points():
    from concurrent.futures import ThreadPoolExecutor

    from forgeflow.tasks.quantize.pareto import budget_grid, pareto_sweep

    p = tiny()
    grid = budget_grid(p, "size_bytes", 5)
    assert grid[0] == pytest.approx(70.0) and grid[-1] == pytest.approx(140.0)
    budgets = [50.0] + grid
    serial = pareto_sweep(p, "size_bytes", budgets)
    with ThreadPoolExecutor(2) as pool:
        fanned = pareto_sweep(p, "size_bytes", budgets, executor=pool)
    assert [pt.status for pt in serial] == [pt.status for pt in fanned]
    assert serial[0].status == SolveStatus.INFEASIBLE and serial[0].smallest == pytest.approx(70.0)
    objs = [pt.allocation.objective for pt in serial[1:]]
    assert objs == [pt.allocation.objective for pt in fanned[1:]]
    assert objs == sorted(objs, reverse=True) and objs[-1] == 0.0  # more bytes never hurt
