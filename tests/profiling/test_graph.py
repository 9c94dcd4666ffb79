"""CostGraph validation, identity and the layer view, on hand-written graphs."""

import math
from dataclasses import replace

import pytest

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node, layer_view, module_prefix


def _node(nid, module="", op="conv2d", flops=10, latency=1.0, out=4, cost=0.5, **kw):
    return Node(nid, op, module, flops, 8, out, latency, output_cost_ms=cost, **kw)


def _chain():
    # a -> b -> c, and a -> c (a skip connection)
    nodes = (_node("a", "layer1.0.conv1"), _node("b", "layer1.0.relu", op="relu", flops=2),
             _node("c", "layer2.conv", latency=2.0))
    edges = (Edge("a", "b", 4, 0.5), Edge("b", "c", 4, 0.5), Edge("a", "c", 4, 0.5))
    return CostGraph("chain", nodes, edges, meta={"shape": (1, 3)})


def test_valid_graph_totals_and_order():
    g = _chain()
    assert g.total_flops == 22
    assert g.total_param_bytes == 24
    assert g.total_latency_ms == 4.0
    assert g.topological_order() == ["a", "b", "c"]
    assert g.meta == {"shape": [1, 3]}  # canonical JSON values


def test_graph_id_is_content_hash():
    g1, g2 = _chain(), _chain()
    assert g1.graph_id == g2.graph_id and len(g1.graph_id) == 16
    slower = CostGraph(g1.name, (replace(g1.nodes[0], latency_ms=1.5),) + g1.nodes[1:], g1.edges, meta=g1.meta)
    assert slower.graph_id != g1.graph_id
    assert slower.structure_id == g1.structure_id  # only a measured time differs
    assert CostGraph.from_dict(g1.to_dict()) == g1


@pytest.mark.parametrize(
    "nodes,edges,message",
    [
        ((_node("a"), _node("a")), (), "duplicate node id 'a'"),
        ((_node("a"), _node("b")), (Edge("a", "z", 1, 0.0),), "dangling edge"),
        ((_node("a"), _node("b")), (Edge("a", "b", 1, 0.0), Edge("b", "a", 1, 0.0)), "cycle"),
        ((_node("a"),), (Edge("a", "a", 1, 0.0),), "self-loop"),
        ((_node("a", latency=-1.0),), (), "latency_ms=-1.0"),
        ((_node("a", latency=math.nan),), (), "latency_ms=nan"),
        ((_node("a", flops=-3),), (), "flops=-3"),
        ((_node("a"), _node("b")), (Edge("a", "b", 1, math.inf),), "cost_ms=inf"),
        ((_node("a"), _node("b")), (Edge("a", "b", -1, 0.0),), "bytes=-1"),
        ((_node("a"), _node("b")), (Edge("a", "b", 1, 0.0), Edge("a", "b", 1, 0.0)), "duplicate edge"),
    ],
)
def test_invalid_graphs_raise_one_clear_error(nodes, edges, message):
    with pytest.raises(InvalidGraphError, match=message.replace("(", r"\(")):
        CostGraph("bad", nodes, edges)


def test_invalid_device_limits():
    with pytest.raises(InvalidGraphError, match="max_devices"):
        CostGraph("g", (_node("a"),), (), max_devices=0)
    with pytest.raises(InvalidGraphError, match="max_size_per_device"):
        CostGraph("g", (_node("a"),), (), max_size_per_device=-1.0)


def test_module_prefix():
    assert module_prefix("layer1.0.conv1", 1) == "layer1"
    assert module_prefix("layer1.0.conv1", 2) == "layer1.0"
    assert module_prefix("layer1.0.conv1", 9) == "layer1.0.conv1"
    with pytest.raises(InvalidGraphError):
        module_prefix("x", 0)


def test_layer_view_groups_by_module_prefix_and_sums():
    g = _chain()
    lv = layer_view(g, depth=1)
    assert [n.id for n in lv.nodes] == ["layer1", "layer2"]
    l1 = lv.nodes[0]
    assert (l1.flops, l1.param_bytes, l1.latency_ms, l1.op) == (12, 16, 2.0, "conv2d+relu")
    # a and b both feed layer2: their outputs are two tensors leaving layer1
    assert l1.output_bytes == 8 and l1.output_cost_ms == 1.0
    assert lv.edges == (Edge("layer1", "layer2", 8, 1.0),)
    assert lv.total_flops == g.total_flops
    assert lv.meta["members"] == {"layer1": ["a", "b"], "layer2": ["c"]}


def test_layer_view_splits_reentered_module_so_the_result_stays_acyclic():
    # one ReLU module called twice around a conv: grouping it naively would make a cycle relu <-> conv
    nodes = (_node("r1", "relu", op="relu"), _node("c", "conv"), _node("r2", "relu", op="relu"),
             _node("fl", "", op="flatten"))
    edges = (Edge("r1", "c", 4, 0.5), Edge("c", "r2", 4, 0.5), Edge("r2", "fl", 4, 0.5))
    lv = layer_view(CostGraph("g", nodes, edges), depth=1)
    assert [n.id for n in lv.nodes] == ["relu", "conv", "relu@2", "fl"]
    assert [(e.src, e.dst) for e in lv.edges] == [("relu", "conv"), ("conv", "relu@2"), ("relu@2", "fl")]
