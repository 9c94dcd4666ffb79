"""Joint placement + precision: hand-computed optima, brute force on small chains, the validator."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgeflow.tasks.errors import InfeasibleError
from forgeflow.tasks.partition.cost import InvalidPlanError
from forgeflow.tasks.plan import PlanInstance, solve_plan
from forgeflow.tasks.plan.validate import validate_joint


def chain(n=4, k=2, cap=10.0, budget=1.2, cost=0.5):
    return {"maxFPGAs": k, "maxSizePerFPGA": cap, "sensitivityBudget": budget,
            "nodes": [{"id": i, "fpgaLatency": 4.0, "size": 4.0,
                       "bitOptions": [{"bits": 8, "latency": 2.0, "size": 1.0, "sensitivity": 0.6}]}
                      for i in range(n)],
            "edges": [{"sourceId": i, "destId": i + 1, "cost": cost} for i in range(n - 1)]}


def test_hand_computed_joint_optimum_spends_bits_on_both_stages():
    # budget 1.2 buys two 8-bit nodes: one per stage gives 4 + 2 + 0.5 = 6.5 on each; any other split is worse
    res = solve_plan(PlanInstance.from_json_dict(chain(), name="c"), 10)
    assert res.bottleneck == pytest.approx(6.5)
    assert res.status.value == "optimal" and res.ratio == pytest.approx(1.0, abs=1e-5)
    bits = res.to_plan_json()["bits"]
    assert sorted(bits.values()) == [8, 8, 32, 32]
    assert [len(s) for s in res.plan.stages] == [2, 2]
    assert all(8 in [bits[str(i)] for i in s] for s in res.plan.stages)
    assert res.to_plan_json()["baselines"]["uniform_8bit"] is None  # 4 x 0.6 > 1.2


def test_memory_that_only_fits_quantized():
    # cap 6: two float nodes (8 bytes) never share a stage, four nodes in two stages need two quantized ones
    data = chain(cap=6.0)
    res = solve_plan(PlanInstance.from_json_dict(data, name="c"), 10)
    assert res.bottleneck == pytest.approx(6.5)
    assert max(res.plan.memory) <= 6.0
    assert res.to_plan_json()["baselines"]["uniform_float"] is None
    data["sensitivityBudget"] = 0.6  # one quantized node: 4 + 4 + 1 > 6 somewhere -> no plan
    with pytest.raises(InfeasibleError):
        solve_plan(PlanInstance.from_json_dict(data, name="c"), 5)


def test_budget_below_every_plan_is_infeasible():
    inst = PlanInstance.from_json_dict(chain(), name="c").with_budget(-0.0)
    res = solve_plan(inst, 5)  # budget 0: float only
    assert res.plan.sensitivity == 0.0 and res.bottleneck == pytest.approx(8.5)


def test_validator_rejects_over_budget_and_over_memory():
    inst = PlanInstance.from_json_dict(chain(cap=8.0, budget=0.6), name="c")
    a = np.array([0, 0, 1, 1])
    validate_joint(inst, a, np.array([1, 0, 0, 0]))
    with pytest.raises(InvalidPlanError, match="budget"):
        validate_joint(inst, a, np.array([1, 1, 0, 0]))
    with pytest.raises(InvalidPlanError, match="memory"):
        validate_joint(inst, np.array([0, 0, 0, 1]), np.array([1, 0, 0, 0]))
    with pytest.raises(InvalidPlanError, match="backwards"):
        validate_joint(inst, np.array([1, 0, 1, 1]), np.array([0, 0, 0, 0]))
    with pytest.raises(InvalidPlanError, match="option"):
        validate_joint(inst, a, np.array([2, 0, 0, 0]))


def brute_force(inst: PlanInstance) -> float:
    best = math.inf
    n, k = inst.n, inst.k
    opts = [list(np.flatnonzero(inst.valid[i])) for i in range(n)]
    for cuts in itertools.combinations_with_replacement(range(n + 1), k - 1):
        a = np.zeros(n, dtype=int)
        for c in cuts:
            a[c:] += 1
        for ch in itertools.product(*opts):
            try:
                best = min(best, validate_joint(inst, a, np.array(ch)).bottleneck)
            except InvalidPlanError:
                pass
    return best


@st.composite
def small_chain(draw):
    n = draw(st.integers(2, 5))
    k = draw(st.integers(1, 3))
    fl = st.floats(0.1, 10, allow_nan=False)
    nodes = []
    for i in range(n):
        w, m = draw(fl), draw(fl)
        opts = []
        for b in draw(st.sets(st.sampled_from([8, 4]), max_size=2)):
            opts.append({"bits": b, "latency": w * draw(st.floats(0.2, 1.0)), "size": m * b / 32,
                         "sensitivity": draw(st.floats(0.0, 2.0))})
        nodes.append({"id": f"n{i}", "fpgaLatency": w, "size": m, "bitOptions": opts})
    edges = [{"sourceId": f"n{i}", "destId": f"n{i + 1}", "cost": draw(st.floats(0, 3))} for i in range(n - 1)]
    total = sum(nd["size"] for nd in nodes)
    return {"maxFPGAs": k, "maxSizePerFPGA": total * draw(st.floats(0.3, 1.2)),
            "sensitivityBudget": draw(st.floats(0.0, 3.0)), "nodes": nodes, "edges": edges}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_chain())
def test_joint_solver_matches_brute_force_on_small_chains(data):
    inst = PlanInstance.from_json_dict(data, name="h")
    best = brute_force(inst)
    if not math.isfinite(best):
        with pytest.raises(InfeasibleError):
            solve_plan(inst, 10)
        return
    res = solve_plan(inst, 10)
    assert res.bottleneck == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert res.lower_bound.value <= best * (1 + 1e-9) + 1e-9
    assert all(b.plan is None or b.bottleneck >= res.bottleneck - 1e-9 for b in res.baselines)
