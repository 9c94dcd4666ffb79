"""Link profiles and the PipeDream graph.txt importer."""

import pytest

from forgeflow.tasks.errors import InvalidGraphError
from forgeflow.tasks.profiling.links import LINKS, LinkProfile, UnknownLinkError, get_link
from forgeflow.tasks.profiling.pipedream_io import format_pipedream_graph, load_pipedream_graph, parse_pipedream_graph

GRAPH_TXT = """node1 -- Input0 -- forward_compute_time=0.000, backward_compute_time=0.000, activation_size=602112.0, \
parameter_size=0.000
node2 -- Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False) -- forward_compute_time=2.500, \
backward_compute_time=5.000, activation_size=3211264.0, parameter_size=37632.000 -- stage_id=0
node3 -- ReLU(inplace=True) -- forward_compute_time=0.250, backward_compute_time=0.500, \
activation_size=[1000000.0; 2000000.0], parameter_size=0.000 -- stage_id=1
node4 -- Linear(in_features=512, out_features=10, bias=True) -- forward_compute_time=0.125, \
backward_compute_time=0.250, activation_size=40.0, parameter_size=20520.000 -- stage_id=1
\tnode1 -- node2
\tnode2 -- node3
\tnode3 -- node4
\tnode2 -- node4
"""


def test_transfer_time_is_bytes_over_bandwidth_plus_latency():
    link = LinkProfile("test", 1e9, 1e-5)
    assert link.transfer_ms(1e6) == pytest.approx(1.0 + 0.01)
    assert link.transfer_ms(0) == 0.0
    assert get_link("pcie4_x16") is LINKS["pcie4_x16"]
    assert get_link(None).name == "pcie4_x16"
    custom = get_link("custom:12.5:8")
    assert custom.bandwidth_bytes_per_s == 12.5e9 and custom.latency_s == pytest.approx(8e-6)
    # the msr-fiddle graphs price 2359296 bytes at 1.0986328125 ms
    assert get_link("msr_fpga").transfer_ms(2359296) == pytest.approx(1.0986328125)
    for name in ("nvlink", "100gbe", "10gbe"):
        assert get_link(name).transfer_ms(1 << 20) > 0


def test_unknown_or_invalid_link():
    with pytest.raises(UnknownLinkError, match="unknown link profile 'warp'"):
        get_link("warp")
    with pytest.raises(UnknownLinkError, match="bandwidth"):
        LinkProfile("x", 0.0, 0.0)


def test_pipedream_import(tmp_path):
    p = tmp_path / "resnet_tiny" / "graph.txt"
    p.parent.mkdir()
    p.write_text(GRAPH_TXT)
    g = load_pipedream_graph(p, link="10gbe")
    assert g.name == "resnet_tiny"
    assert [n.id for n in g.nodes] == ["node1", "node2", "node3", "node4"]
    conv = g.node("node2")
    assert (conv.op, conv.latency_ms, conv.param_bytes, conv.output_bytes, conv.size_bytes) == \
        ("Conv2d", 2.5, 37632, 3211264, 37632.0)
    assert g.node("node3").output_bytes == 3_000_000  # a list of activations is summed, as PipeDream does
    link = get_link("10gbe")
    e = next(e for e in g.edges if (e.src, e.dst) == ("node2", "node3"))
    assert e.bytes == 3211264 and e.cost_ms == pytest.approx(3211264 / 1.15e9 * 1e3 + 0.05)
    assert conv.output_cost_ms == e.cost_ms == link.transfer_ms(3211264)
    assert g.meta["pipedream"]["stage_ids"] == {"node2": 0, "node3": 1, "node4": 1}
    assert g.meta["pipedream"]["descriptions"]["node3"] == "ReLU(inplace=True)"
    train = load_pipedream_graph(p, link="10gbe", training=True)
    assert train.node("node2").latency_ms == 7.5
    assert train.edges[1].cost_ms == pytest.approx(2 * e.cost_ms)


def test_pipedream_format_round_trip():
    g = parse_pipedream_graph(GRAPH_TXT, training=True, name="t")
    again = parse_pipedream_graph(format_pipedream_graph(g), training=True, name="t")
    assert [(n.id, n.latency_ms, n.output_bytes, n.param_bytes) for n in again.nodes] == \
        [(n.id, n.latency_ms, n.output_bytes, n.param_bytes) for n in g.nodes]
    assert again.edges == g.edges


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "no node lines"),
        ("node1 -- Input0\n", "expected 'nodeN -- DESCRIPTION"),
        ("node1 -- X -- forward_compute_time=abc, backward_compute_time=0, activation_size=0, parameter_size=0\n",
         "not a number"),
        ("node1 -- X -- forward_compute_time=1, backward_compute_time=0, activation_size=0\n",
         "missing parameter_size"),
        ("node1 -- X -- forward_compute_time=-1, backward_compute_time=0, activation_size=0, parameter_size=0\n",
         "forward_compute_time=-1.0"),
        ("node1 -- X -- forward_compute_time=1, backward_compute_time=0, activation_size=0, parameter_size=0\n"
         "\tnode1 -- node9\n", "node 'node9', which has no node line"),
        ("node1 -- X -- forward_compute_time=1, backward_compute_time=0, activation_size=0, parameter_size=0\n"
         "\tnode1\n", "edge line must be"),
        ("node1 -- X -- forward_compute_time=1, backward_compute_time=0, activation_size=0, parameter_size=0\n"
         "node2 -- X -- forward_compute_time=1, backward_compute_time=0, activation_size=0, parameter_size=0\n"
         "\tnode1 -- node2\n\tnode2 -- node1\n", "cycle"),
    ],
)
def test_malformed_pipedream_files(text, message):
    with pytest.raises(InvalidGraphError, match=message):
        parse_pipedream_graph(text)
