import numpy as np
import pytest

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.partition.adapters import problem_from_graph
from forgeflow.tasks.partition.plot import stage_loads_png
from forgeflow.tasks.partition.solve import SolveConfig, partition
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node
from tests.partition.dags import diamond


def node(i, ms, size, cls=None, out=0.0):
    return Node(id=i, op="op", module=i, flops=0, param_bytes=0, output_bytes=0, latency_ms=ms, size_bytes=size,
                color_class=cls, output_cost_ms=out)


def test_problem_from_graph_maps_costs_classes_and_defaults():
    g = CostGraph("g", (node("x", 1.0, 2.0, out=0.3), node("y", 2.0, 3.0, "c"), node("z", 3.0, 4.0, "c")),
                  (Edge("x", "y", 10, 0.5), Edge("x", "z", 10, 0.1), Edge("y", "z", 10, 0.2)),
                  max_size_per_device=8.0, max_devices=3)
    p = problem_from_graph(g)
    assert p.k == 3 and p.mem_cap == 8.0 and p.node_ids == ("x", "y", "z")
    np.testing.assert_allclose(p.w, [1, 2, 3])
    np.testing.assert_allclose(p.m, [2, 3, 4])
    np.testing.assert_allclose(p.c, [0.5, 0.2, 0.0])  # the larger of output_cost_ms and the out-edge costs
    assert sorted(map(sorted, p.classes)) == [[0], [1, 2]]
    assert problem_from_graph(g, 2, 100.0).mem_cap == 100.0
    with pytest.raises(InvalidGraphError, match="memory cap 5 is below"):
        problem_from_graph(g, 2, 5.0)  # class {y, z} holds 7
    no_k = CostGraph("g", g.nodes, g.edges)
    with pytest.raises(InvalidGraphError, match="number of stages"):
        problem_from_graph(no_k)


def test_stage_loads_plot_is_a_png():
    res = partition(diamond(3), SolveConfig(time_limit=5))
    png = stage_loads_png(res)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
