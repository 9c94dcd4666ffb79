"""msr-fiddle JSON import/export: field mapping, exact round trips both ways, malformed files."""

import json

import pytest

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.partition.problem import PartitionProblem
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node
from forgeflow.tasks.profiling.msr_io import dump_msr_json, graph_to_msr_dict, load_msr_json

MSR = {
    "maxSizePerFPGA": 1000.0, "maxFPGAs": 2, "maxCPUs": 1,
    "nodes": [
        {"name": "node1", "id": 1, "supportedOnFpga": 1, "cpuLatency": 12.5, "fpgaLatency": 1.25,
         "isBackwardNode": 0, "colorClass": 7, "size": 100.0},
        {"name": "node2", "id": 2, "supportedOnFpga": True, "cpuLatency": 3.0, "fpgaLatency": 0.5,
         "isBackwardNode": False, "size": 50.0, "layerId": 4},
        {"name": "node3grad", "id": 5, "supportedOnFpga": 0, "cpuLatency": 1.0, "fpgaLatency": 0.25,
         "isBackwardNode": True, "colorClass": 7, "size": 0.0},
    ],
    "edges": [
        {"sourceId": 1, "destId": 2, "cost": 0.125, "size": 2048.0},
        {"sourceId": 1, "destId": 5, "cost": 0.25, "size": 2048.0},
        {"sourceId": 2, "destId": 5, "cost": 1e-9, "size": 0.125},
    ],
}


@pytest.fixture
def msr_file(tmp_path):
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(MSR))
    return p


def test_import_maps_every_field(msr_file):
    g = load_msr_json(msr_file)
    assert g.name == "tiny" and g.max_devices == 2 and g.max_size_per_device == 1000.0
    a, b, c = g.nodes
    assert (a.id, a.module, a.latency_ms, a.cpu_latency_ms, a.size_bytes, a.color_class) == \
        ("1", "node1", 1.25, 12.5, 100.0, "7")
    assert b.color_class is None and b.supported_on_accel and not b.is_backward
    assert c.is_backward and not c.supported_on_accel
    # output_cost_ms of a source is the largest cost of its out-edges (msr charges a transfer per output)
    assert (a.output_cost_ms, b.output_cost_ms, c.output_cost_ms) == (0.25, 1e-9, 0.0)
    assert g.edges[0] == Edge("1", "2", 2048, 0.125)
    assert g.edges[2].bytes == 1  # a sub-byte (bool) tensor rounds up to a byte


def test_msr_then_graph_then_msr_is_exact(msr_file, tmp_path):
    g = load_msr_json(msr_file)
    out = dump_msr_json(g, tmp_path / "out" / "again.json")
    back = json.loads(out.read_text())
    for orig, new in zip(MSR["nodes"], back["nodes"]):
        for key, val in orig.items():
            assert new[key] == val, (key, orig, new)
    for orig, new in zip(MSR["edges"], back["edges"]):
        assert {k: new[k] for k in orig} == orig
    assert back["maxCPUs"] == 1
    assert load_msr_json(out) == g
    # the partition problem reads the export exactly as it reads the original
    p1, p2 = PartitionProblem.from_msr_json(msr_file), PartitionProblem.from_msr_json(out)
    assert p1.w.tolist() == p2.w.tolist() and p1.c.tolist() == p2.c.tolist() and p1.edges == p2.edges


def test_profiled_graph_export_then_import_is_the_same_graph(tmp_path):
    nodes = (Node("conv1", "conv2d", "conv1", 236027904, 37632, 3211264, 4.5, 0.25, 37632.0, None, 0.3),
             Node("relu", "relu", "relu", 0, 0, 3211264, 0.75, 0.0, 0.0, None, 0.3),
             Node("fc", "linear", "fc", 4096000, 8196000, 4000, 0.5, 0.01, 8196000.0))
    g = CostGraph("resnetish", nodes, (Edge("conv1", "relu", 3211264, 0.3), Edge("relu", "fc", 3211264, 0.3)),
                  meta={"capture": "fx", "input_shape": [1, 3, 224, 224]})
    d = graph_to_msr_dict(g)
    assert [n["id"] for n in d["nodes"]] == [0, 1, 2]  # msr tools need integer ids
    assert d["edges"][0] == {"sourceId": 0, "destId": 1, "cost": 0.3, "size": 3211264.0}
    back = load_msr_json(dump_msr_json(g, tmp_path / "g.json"))
    assert back == g and back.graph_id == g.graph_id


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "not valid JSON"),
        ('{"nodes": []}', "'nodes' and 'edges' lists"),
        ('{"nodes": [{"id": 1}], "edges": []}', "missing field 'fpgaLatency'"),
        ('{"nodes": [{"id": 1, "fpgaLatency": "fast"}], "edges": []}', "non-numeric fpgaLatency"),
        ('{"nodes": [{"id": 1, "fpgaLatency": 1}, {"id": 1, "fpgaLatency": 1}], "edges": []}', "duplicate node id"),
        ('{"nodes": [{"id": 1, "fpgaLatency": 1}], "edges": [{"sourceId": 1, "destId": 9, "cost": 0}]}',
         "does not exist"),
        ('{"nodes": [{"id": 1, "fpgaLatency": -1}], "edges": []}', "latency_ms=-1.0"),
        ('{"nodes": [{"id": 1, "fpgaLatency": 1}, {"id": 2, "fpgaLatency": 1}], "edges": '
         '[{"sourceId": 1, "destId": 2, "cost": 0}, {"sourceId": 2, "destId": 1, "cost": 0}]}', "cycle"),
    ],
)
def test_malformed_files_raise_one_clear_error(tmp_path, text, message):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(InvalidGraphError, match=message):
        load_msr_json(p)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidGraphError, match="not found"):
        load_msr_json(tmp_path / "nope.json")
