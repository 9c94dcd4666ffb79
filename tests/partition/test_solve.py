import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings

from forgeflow.tasks.errors import InfeasibleError, InvalidGraphError
from forgeflow.tasks.partition.cost import validate_plan
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.partition.solve import SolveConfig, partition, partition_many
from forgeflow.tasks.partition.status import SolveStatus
from tests.partition.dags import brute_force_optimum, diamond, small_problems

FAST = SolveConfig(time_limit=5.0)


@settings(max_examples=30, deadline=None)
@given(small_problems(max_nodes=5, max_k=3))
def test_lower_bound_le_optimum_le_plan(problem):
    optimum, _ = brute_force_optimum(problem)
    if math.isinf(optimum):
        with pytest.raises(InfeasibleError):
            partition(problem, FAST)
        return
    res = partition(problem, FAST)
    assert res.lower_bound.value <= optimum + 1e-9
    assert validate_plan(problem, np.array(res.plan.assignment)).bottleneck == pytest.approx(res.bottleneck)
    assert res.bottleneck >= optimum - 1e-9
    assert res.bottleneck == pytest.approx(optimum)  # tiny graphs: the DP over ideals is exact
    assert res.ratio >= 1 - 1e-9


def test_diamond_plan_json_by_hand():
    res = partition(diamond(2), FAST)
    doc = res.to_plan_json()
    assert doc["k"] == 2 and doc["stages"] == [["a", "b"], ["c", "d"]]
    assert doc["bottleneck"] == pytest.approx(4.75) and doc["lower_bound"] == pytest.approx(4.75)
    assert doc["ratio"] == pytest.approx(1.0) and doc["status"] == "optimal"
    assert {m["method"] for m in doc["methods"]} >= {"combinatorial", "equal_nodes", "order_dp", "ideals_dp"}
    json.dumps(doc)  # serialisable as is
    assert res.status is SolveStatus.OPTIMAL


def test_arrow_rows_of_one_result():
    p = diamond(3)
    res = partition(p, FAST)
    tables = res.to_arrow(p, "r1")
    assert res.bottleneck == pytest.approx(4.0)
    assert tables["partition_plans"].num_rows == 4
    loads = tables["partition_stage_loads"]
    assert loads.num_rows == 3
    assert max(loads.column("total_ms").to_pylist()) == pytest.approx(4.0)
    assert sum(loads.column("compute_ms").to_pylist()) == pytest.approx(7.0)
    assert tables["partition_results"].column("ratio").to_pylist() == [pytest.approx(1.0)]
    assert "ideals_dp" in tables["partition_bounds"].column("method").to_pylist()


def test_memory_infeasible_is_an_error_not_a_plan():
    with pytest.raises(InfeasibleError, match="does not fit"):
        partition(diamond(2, mem_cap=1.5), FAST)  # 4 units in 2 stages of 1.5
    # fits by total size (2 * 2.5 >= 4) but a -> b -> c -> d with sizes 2, 1, 1, 1 cannot be cut in 2 stages
    chain = PartitionProblem.from_arrays([1, 1, 1, 1], [2, 1, 1, 0.5], [0, 0, 0, 0], [(0, 1), (1, 2), (2, 3)], 2,
                                         mem_cap=2.2)
    with pytest.raises(InfeasibleError, match="memory cap"):
        partition(chain, FAST)


def test_executor_fan_out_gives_the_same_optimum():
    from tests.partition.test_search import layered

    p = layered(3, layers=5, width=3, k=3)
    serial = partition(p, FAST)
    with ThreadPoolExecutor(2) as ex:
        fanned = partition(p, FAST, ex)
        many = partition_many(p, [2, 3], FAST, ex)
    assert fanned.bottleneck == pytest.approx(serial.bottleneck)
    assert [r.k for r in many] == [2, 3] and many[1].bottleneck == pytest.approx(serial.bottleneck)
    assert many[0].bottleneck >= many[1].bottleneck - 1e-9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"edges": [(0, 1), (1, 2), (2, 0)]}, "cycle"),
        ({"w": [1.0, -1.0, 1.0]}, "negative or non-finite"),
        ({"c": [1.0, float("nan"), 1.0]}, "negative or non-finite"),
        ({"edges": [(0, 1), (1, 7)]}, "does not exist"),
        ({"k": 0}, "k must be >= 1"),
        ({"mem_cap": 1.5, "classes": [(0, 1), (2,)]}, "memory cap"),
    ],
)
def test_bad_input_gets_one_clear_error(kwargs, message):
    args = {"w": [1.0, 1.0, 1.0], "m": [1.0, 1.0, 1.0], "c": [0.0, 0.0, 0.0], "edges": [(0, 1), (1, 2)], "k": 2}
    extra = {key: kwargs.pop(key) for key in ("mem_cap", "classes") if key in kwargs}
    args.update(kwargs)
    with pytest.raises(InvalidGraphError, match=message):
        PartitionProblem.from_arrays(args["w"], args["m"], args["c"], args["edges"], args["k"], **extra)


def test_bad_msr_input_gets_one_clear_error():
    good = {"maxFPGAs": 2, "maxSizePerFPGA": 10.0,
            "nodes": [{"id": 1, "fpgaLatency": 1.0, "size": 1.0}, {"id": 2, "fpgaLatency": 1.0, "size": 1.0}],
            "edges": [{"sourceId": 1, "destId": 2, "cost": 0.5}]}
    assert PartitionProblem.from_msr_dict(good).n == 2
    bad = json.loads(json.dumps(good))
    bad["edges"].append({"sourceId": 2, "destId": 9, "cost": 0.1})
    with pytest.raises(InvalidGraphError, match="does not exist"):
        PartitionProblem.from_msr_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["edges"].append({"sourceId": 2, "destId": 1, "cost": 0.1})
    with pytest.raises(InvalidGraphError, match="cycle"):
        PartitionProblem.from_msr_dict(bad)
