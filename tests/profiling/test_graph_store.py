"""Cost graphs through the catalog: exact round trip, lineage, SQL over the tables."""

import pytest

from forgeflow.catalog import open_catalog
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node
from forgeflow.tasks.profiling.graph_store import GraphNotFoundError, list_graphs, read_graph, write_graph


def _graph():
    nodes = (Node("x", "input", "", 0, 0, 64, 0.0),
             Node("conv", "Conv2d", "features.0", 1000, 40, 128, 0.25, 0.01, 40.0, "3", 0.1),
             Node("fc", "Linear", "fc", 200, 12, 8, 0.125, 0.0, 12.0, None, 0.0, 1.5, False, True))
    return CostGraph("tiny", nodes, (Edge("x", "conv", 64, 0.05), Edge("conv", "fc", 128, 0.1)),
                     max_size_per_device=1e6, max_devices=3,
                     meta={"source": "profile", "model": "m:f", "input_shape": [1, 4], "granularity": "op",
                           "params": 13, "timing": {"whole_model_ms": 0.4, "node_sum_ratio": 0.9375,
                                                    "context": {"cpu_model": "cpu", "torch_threads": 1}}})


def test_write_then_read_gives_the_same_graph(tmp_path):
    cat = open_catalog(str(tmp_path / "cat"))
    g = _graph()
    out = write_graph(cat, g, run_id="run1")
    assert out["graph_id"] == g.graph_id and set(out["files"]) == {"graphs", "graph_nodes", "graph_edges"}
    back = read_graph(cat, g.graph_id)
    assert back == g and back.graph_id == g.graph_id
    head = list_graphs(cat).to_pylist()
    assert head[0]["graph_id"] == g.graph_id and head[0]["run_id"] == "run1" and head[0]["flops"] == 1200
    # lineage: every file written is an artifact of the run
    arts = cat.read("artifacts").to_pylist()
    assert {a["table_name"] for a in arts if a["run_id"] == "run1"} == {"graphs", "graph_nodes", "graph_edges"}
    rows = cat.query("SELECT n.node_id, n.flops FROM graphs g JOIN graph_nodes n USING (graph_id) "
                     f"WHERE g.graph_id = '{g.graph_id}' ORDER BY n.position").to_pylist()
    assert rows == [{"node_id": "x", "flops": 0}, {"node_id": "conv", "flops": 1000}, {"node_id": "fc", "flops": 200}]


def test_unknown_graph(tmp_path):
    cat = open_catalog(str(tmp_path / "cat"))
    write_graph(cat, _graph(), run_id="r")
    with pytest.raises(GraphNotFoundError, match="no graph 'deadbeef'"):
        read_graph(cat, "deadbeef")
