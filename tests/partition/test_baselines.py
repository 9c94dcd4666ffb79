import json

import numpy as np
import pytest

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.partition.baselines import (all_baselines, compute_balanced, equal_nodes, expert_assignment, expert_plan,
                                       param_balanced)
from forgeflow.tasks.partition.problem import PartitionProblem
from tests.partition.dags import diamond


def chain(w, m=None, c=None, k=2, cap=None):
    n = len(w)
    return PartitionProblem.from_arrays(w, m if m is not None else np.ones(n), c if c is not None else np.zeros(n),
                                        [(i, i + 1) for i in range(n - 1)], k, mem_cap=cap)


def test_equal_nodes_and_param_balanced_cut_where_the_running_total_crosses_half():
    p = chain([1, 1, 1, 1, 10, 10], m=[5, 5, 1, 1, 1, 1])
    np.testing.assert_array_equal(equal_nodes(p, 2).assignment, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(param_balanced(p, 2).assignment, [0, 1, 1, 1, 1, 1])
    assert param_balanced(p, 2).bottleneck == pytest.approx(23.0)


def test_compute_balanced_ignores_communication_but_is_scored_with_it():
    # work balance says cut after node 1 (3 | 3); that edge carries 5 ms while cutting after node 2 is free
    p = chain([1, 2, 2, 1], c=[0, 5, 0, 0])
    b = compute_balanced(p, 2)
    np.testing.assert_array_equal(b.assignment, [0, 0, 1, 1])
    assert b.bottleneck == pytest.approx(8.0)


def test_baseline_over_the_memory_cap_is_reported_infeasible_not_repaired():
    p = chain([1, 1, 1, 1], m=[3, 1, 1, 1], cap=3.5)
    b = equal_nodes(p, 2)
    assert b.assignment is None and b.bottleneck == float("inf") and "memory cap" in b.message


def test_expert_split_is_put_in_pipeline_order(tmp_path):
    p = diamond(3)
    a = expert_assignment(p, {"fpgas": [{"nodes": ["d"]}, {"nodes": ["a", "b"]}, {"nodes": ["c"]}], "cpus": []})
    np.testing.assert_array_equal(a, [0, 0, 1, 2])
    f = tmp_path / "e.json"
    f.write_text(json.dumps({"fpgas": [{"nodes": ["a", "b"]}, {"nodes": ["c", "d"]}], "cpus": [{"nodes": []}]}))
    assert expert_plan(p, 3, f).bottleneck == pytest.approx(4.75)
    assert expert_plan(p.with_k(1), 1, f).assignment is None  # two devices do not fit in one stage
    with pytest.raises(InvalidGraphError, match="unplaced"):
        expert_assignment(p, {"fpgas": [{"nodes": ["a"]}]})
    with pytest.raises(InvalidGraphError, match="not in the graph"):
        expert_assignment(p, {"fpgas": [{"nodes": ["a", "b", "c", "d", "zz"]}]})
    with pytest.raises(InvalidGraphError, match="both ways"):
        expert_assignment(p, {"fpgas": [{"nodes": ["a", "d"]}, {"nodes": ["b", "c"]}]})


def test_all_baselines_respect_co_location():
    p = diamond(2, merge_bc=True)
    for b in all_baselines(p, 2):
        if b.assignment is not None:
            assert b.assignment[1] == b.assignment[2]
