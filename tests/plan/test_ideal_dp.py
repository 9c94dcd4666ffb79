"""The DP over ideals of joint plans (tasks.plan.ideal_dp) against brute force on tiny graphs, heterogeneous too:
the exact partition of fixed bits is exact, the budget-dimension bound never exceeds the optimum."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forgeflow.tasks.partition.cost import InvalidPlanError
from forgeflow.tasks.plan import PlanInstance, solve_plan
from forgeflow.tasks.plan import ideal_dp
from forgeflow.tasks.plan.validate import BUDGET_RTOL, validate_joint


def every_plan(inst: PlanInstance):
    """(assignment, choice, bottleneck, sensitivity) of every plan valid without the budget."""
    free = inst.with_budget(None)
    opts = [list(np.flatnonzero(inst.valid[i])) for i in range(inst.n)]
    for a in itertools.product(range(inst.k), repeat=inst.n):
        for ch in itertools.product(*opts):
            try:
                loads = validate_joint(free, np.array(a), np.array(ch))
            except InvalidPlanError:
                continue
            yield np.array(a), np.array(ch), loads.bottleneck, loads.sensitivity


@st.composite
def tiny_graph(draw):
    n = draw(st.integers(2, 4))
    k = draw(st.integers(1, 3))
    fl = st.floats(0.1, 10, allow_nan=False)
    nodes = []
    for i in range(n):
        w, m = draw(fl), draw(fl)
        opts = [{"bits": b, "latency": w * draw(st.floats(0.2, 1.0)), "size": m * b / 32,
                 "sensitivity": draw(st.floats(0.0, 2.0))}
                for b in sorted(draw(st.sets(st.sampled_from([8, 4]), max_size=2)))]
        nodes.append({"id": i, "fpgaLatency": w, "size": m, "bitOptions": opts})
    # a chain, or a DAG with a skip edge (more ideals than prefixes)
    edges = [(i, i + 1) for i in range(n - 1)]
    if n >= 3 and draw(st.booleans()):
        edges = [(0, 1), (0, 2)] + [(i, i + 1) for i in range(2, n - 1)] + ([(1, n - 1)] if n > 3 else [])
    total = sum(nd["size"] for nd in nodes)
    data = {"maxFPGAs": k, "maxSizePerFPGA": total * draw(st.floats(0.3, 1.2)),
            "sensitivityBudget": draw(st.floats(0.0, 3.0)), "nodes": nodes,
            "edges": [{"sourceId": u, "destId": v, "cost": draw(st.floats(0, 3))} for u, v in edges]}
    if draw(st.booleans()):  # heterogeneous: each stage its own speed per width and memory
        data["stageDevices"] = [{"name": f"d{s}", "memory": total * draw(st.floats(0.3, 1.2)),
                                 "timeScale": {"32": draw(st.floats(0.3, 2.0)), "8": draw(st.floats(0.3, 2.0)),
                                               "4": draw(st.floats(0.3, 2.0))}} for s in range(k)]
    return data


def _chain(lat, sizes, cap, budget, options=None):
    nodes = [{"id": i, "fpgaLatency": a, "size": s, "bitOptions": (options or {}).get(i, [])}
             for i, (a, s) in enumerate(zip(lat, sizes))]
    edges = [{"sourceId": i, "destId": i + 1, "cost": 0.0} for i in range(len(lat) - 1)]
    return {"maxFPGAs": 1, "maxSizePerFPGA": cap, "sensitivityBudget": budget, "nodes": nodes, "edges": edges}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_graph(), st.floats(0.0, 1.5))
# found by hypothesis in CI: a stage whose time is exactly the optimum (pair times are differences of prefix sums);
# an option whose sensitivity is within the validator's absolute slack of a zero budget
@example(_chain([1.0, 1.6018369877784737, 2.0, 0.1], [1.0] * 4, 4.0, 0.0), 0.0)
@example(_chain([1.0, 1.0, 1.0], [1.0] * 3, 3.0, 0.0,
                {2: [{"bits": 8, "latency": 0.5, "size": 0.25, "sensitivity": 3.714058272906783e-177}]}), 0.0)
def test_ideal_dp_against_brute_force(data, frac):
    inst = PlanInstance.from_json_dict(data, name="tiny")
    plans = list(every_plan(inst))
    ub = max((p[2] for p in plans), default=100.0) * 2 + 1
    free = ideal_dp.build_pairs(inst.with_budget(None), ub)
    assert free.complete
    # the exact partition of fixed bits: float and every plan's bits
    for ch in {tuple(p[1]) for p in plans} | {tuple([0] * inst.n)}:
        ch = np.array(ch)
        want = min((p[2] for p in plans if (p[1] == ch).all()), default=math.inf)
        got, a = ideal_dp.exact_partition(free, ch)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12) or (math.isinf(got) and math.isinf(want))
        if a is not None:
            assert validate_joint(inst.with_budget(None), a, ch).bottleneck == pytest.approx(want, rel=1e-9)
    # the budget DP: at any T, its least sensitivity never exceeds that of a plan <= T within the budget
    opt = min((p[2] for p in plans if p[3] <= inst.budget * (1 + BUDGET_RTOL) + 1e-12), default=math.inf)
    bb = ideal_dp.BudgetBound(ideal_dp.build_pairs(inst, ub))
    top = max((p[2] for p in plans), default=1.0)
    for T in (frac * top, opt, opt * (1 - 1e-3), top):
        if not math.isfinite(T):
            continue
        best_sens = min((p[3] for p in plans if p[2] <= T and p[3] <= inst.budget * (1 + BUDGET_RTOL) + 1e-12), default=math.inf)
        low, _ = bb.least_sensitivity(T)
        assert low <= best_sens * (1 + 1e-9) + 1e-12
    # so the bisection's bound never exceeds the optimum (inf: no plan at all)
    lb, chains = ideal_dp.budget_bound(bb, 0.0, ub, deadline=math.inf, rtol=1e-9)
    assert lb <= opt * (1 + 1e-9) + 1e-12
    # and the whole solve finds the optimum with a valid bound
    if math.isfinite(opt):
        res = solve_plan(inst, 10)
        assert res.bottleneck == pytest.approx(opt, rel=1e-6, abs=1e-9)
        assert res.lower_bound.value <= opt * (1 + 1e-9) + 1e-9


def wide(n_branches: int) -> dict:
    """A fan-out of n parallel branches: 2^n ideals."""
    nodes = [{"id": "in", "fpgaLatency": 1.0, "size": 1.0}, {"id": "out", "fpgaLatency": 1.0, "size": 1.0}]
    edges = []
    for b in range(n_branches):
        nodes.append({"id": f"b{b}", "fpgaLatency": 2.0 + b % 3, "size": 1.0,
                      "bitOptions": [{"bits": 8, "latency": 1.0, "size": 0.25, "sensitivity": 1.0}]})
        edges += [{"sourceId": "in", "destId": f"b{b}", "cost": 0.1}, {"sourceId": f"b{b}", "destId": "out",
                                                                       "cost": 0.1}]
    return {"maxFPGAs": 3, "sensitivityBudget": 4.0, "nodes": nodes, "edges": edges}


def test_too_many_ideals_falls_back_to_topological_prefixes():
    inst = PlanInstance.from_json_dict(wide(12), name="wide")
    table = ideal_dp.build_pairs(inst, 100.0, max_ideals=500)
    assert not table.complete and table.N < 500
    _, a = ideal_dp.exact_partition(table, np.zeros(inst.n, dtype=np.int64))
    assert a is not None  # a valid placement from prefixes only
    validate_joint(inst.with_budget(None), a, np.zeros(inst.n, dtype=np.int64))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_graph(), st.integers(2, 4))
def test_relaxed_table_bound_never_exceeds_the_optimum(data, max_ideals):
    """Leaving the lightest groups out (so the ideals fit ``max_ideals``) is a relaxation: the bound DP on the
    relaxed table never exceeds the brute-force optimum, and its chains map back to ordered placements."""
    inst = PlanInstance.from_json_dict(data, name="tiny")
    plans = list(every_plan(inst))
    opt = min((p[2] for p in plans if p[3] <= inst.budget * (1 + BUDGET_RTOL) + 1e-12), default=math.inf)
    ub = max((p[2] for p in plans), default=100.0) * 2 + 1
    rt = ideal_dp.relaxed_pairs(inst, ub, max_ideals=max_ideals)
    assert rt.N <= max_ideals and rt.complete
    lb, chains = ideal_dp.budget_bound(ideal_dp.BudgetBound(rt), 0.0, ub, deadline=math.inf, rtol=1e-9)
    assert lb <= opt * (1 + 1e-9) + 1e-12
    for _, chain in chains:
        a = rt.assignment(chain)
        assert all(a[u] <= a[v] for u, v in inst.base.edges)


def test_relaxed_bound_on_a_wide_graph():
    """2^12 ideals: the relaxed table leaves light branches out and still proves a useful bound (the optimum puts
    at least a third of the work, less what can be left out, on one stage)."""
    inst = PlanInstance.from_json_dict(wide(12), name="wide")
    res = solve_plan(inst, 1)  # any valid plan bounds the optimum from above
    rt = ideal_dp.relaxed_pairs(inst, res.bottleneck * 1.01, max_ideals=200)
    assert rt.N <= 200 and 0 < (~rt.kept).sum() < rt.kept.size
    lb, _ = ideal_dp.budget_bound(ideal_dp.BudgetBound(rt), 0.0, res.bottleneck * 1.01, deadline=math.inf)
    assert 0 < lb <= res.bottleneck * (1 + 1e-9)


def test_budget_and_total_memory_jointly_infeasible_is_proven_fast():
    """Each 4-bit option fits the budget alone, but only one can be taken and then the model exceeds the device:
    the budgeted knapsack over total memory proves it (InfeasibleError naming the cause), without a 60 s search."""
    opt = [{"bits": 4, "latency": 0.5, "size": 0.25, "sensitivity": 1.0}]
    data = _chain([1.0, 1.0], [1.0, 1.0], 1.0, 1.0, {0: opt, 1: opt})
    inst = PlanInstance.from_json_dict(data, name="tight")
    from forgeflow.tasks.errors import InfeasibleError

    with pytest.raises(InfeasibleError, match="total memory"):
        solve_plan(inst, 30)
