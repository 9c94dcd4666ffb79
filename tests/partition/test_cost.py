import numpy as np
import pytest
from hypothesis import given, settings

from forgeflow.tasks.partition.cost import InvalidPlanError, stage_loads, stages_in_pipeline_order, validate_plan
from tests.partition.dags import diamond, small_problems


def test_hand_computed_loads_of_the_diamond():
    # {a, b} | {c, d}: stage 0 = 1 + 2 + out(a) 0.5 + out(b) 0.25; stage 1 = 3 + 1 + in(a) 0.5 + in(b) 0.25
    loads = validate_plan(diamond(2), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(loads.compute, [3.0, 4.0])
    np.testing.assert_allclose(loads.comm_out, [0.75, 0.0])
    np.testing.assert_allclose(loads.comm_in, [0.0, 0.75])
    np.testing.assert_allclose(loads.memory, [2.0, 2.0])
    assert loads.bottleneck == pytest.approx(4.75)


def test_output_read_by_two_nodes_of_one_stage_is_paid_once():
    # a | b, c, d: a's output goes to b and c, both in stage 1: paid once on each side
    loads = validate_plan(diamond(2), np.array([0, 1, 1, 1]))
    assert loads.comm_out[0] == pytest.approx(0.5)
    assert loads.comm_in[1] == pytest.approx(0.5)
    # a | b | c, d: a's output leaves stage 0 once, but enters stages 1 and 2
    loads = validate_plan(diamond(3), np.array([0, 1, 2, 2]), 3)
    np.testing.assert_allclose(loads.comm_out, [0.5, 0.25, 0.0])
    np.testing.assert_allclose(loads.comm_in, [0.0, 0.5, 0.75])


def test_stages_listed_in_pipeline_order_with_input_ids():
    assert stages_in_pipeline_order(diamond(3), np.array([0, 0, 2, 2]), 3) == [["a", "b"], [], ["c", "d"]]


@pytest.mark.parametrize(
    "plan, k, problem_kw, message",
    [
        ([0, 0, 1], 2, {}, "assigns"),
        ([0, 0, 1, 2], 2, {}, "outside 0..1"),
        ([0, 0, -1, 1], 2, {}, "outside"),
        ([1, 0, 1, 1], 2, {}, "runs backwards"),
        ([0, 0, 1, 1], 2, {"merge_bc": True}, "co-location class"),
        ([0, 0, 0, 1], 2, {"mem_cap": 2.5}, "memory cap"),
        ([0.0, 0.5, 1.0, 1.0], 2, {}, "integers"),
    ],
)
def test_validator_rejects_each_kind_of_invalid_plan(plan, k, problem_kw, message):
    with pytest.raises(InvalidPlanError, match=message):
        validate_plan(diamond(k, **problem_kw), np.array(plan), k)


@settings(max_examples=60, deadline=None)
@given(small_problems())
def test_loads_add_up_to_work_and_transfers(problem):
    # any topological order cut in the middle is a valid plan; compute sums to total work, and every transfer paid
    # on the sending side is also paid on at least one receiving side
    order = problem.topological_order()
    a = np.zeros(problem.n, dtype=np.int64)
    a[order[len(order) // 2:]] = 1
    loads = stage_loads(problem, a, 2)
    assert loads.compute.sum() == pytest.approx(problem.w.sum())
    assert loads.comm_in.sum() >= loads.comm_out.sum() - 1e-12
