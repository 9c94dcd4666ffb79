"""profile_model end to end: totals, stable ids, layer view, measured context, bad input."""

import math

import pytest
import torch

from forgeflow.tasks.errors import UnknownModelError
from forgeflow.tasks.profiling.errors import InputShapeError, ProfileConfigError, UnknownLinkError, UntraceableModelError
from forgeflow.tasks.profiling.links import get_link
from forgeflow.tasks.profiling.profile import parse_shape, profile_model


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_profile_small_resnet_totals_edges_and_context():
    g = profile_model("torchvision:resnet18", (1, 3, 64, 64), repeats=2, warmup=1, link="10gbe")
    m = g.meta
    assert m["capture"] == "fx" and m["capture_notes"] == []
    assert g.total_flops == m["flops"] == m["flops_reference"] > 0
    assert m["params"] == m["params_in_nodes"] == 11_689_512
    assert g.total_param_bytes == m["param_bytes"] == 4 * 11_689_512
    assert g.nodes[0].op == "input" and g.nodes[0].output_bytes == 3 * 64 * 64 * 4
    # every node and edge is priced on the link: transfer = bytes / bandwidth + latency
    link = get_link("10gbe")
    for e in g.edges:
        assert e.cost_ms == link.transfer_ms(e.bytes)
    conv1 = g.node("conv1")
    assert conv1.output_cost_ms == link.transfer_ms(conv1.output_bytes) and conv1.latency_ms > 0
    # the residual add has two inputs
    assert sorted(e.src for e in g.edges if e.dst == "add") == ["layer1_0_bn2", "maxpool"]
    t = m["timing"]
    assert t["repeats"] == 2 and t["warmup"] == 1 and len(t["whole_model_samples_ms"]) == 2
    assert t["whole_model_ms"] > 0 and math.isclose(t["node_sum_ratio"], t["node_sum_ms"] / t["whole_model_ms"])
    ctx = t["context"]
    assert ctx["torch_threads"] == 1 and ctx["torch_version"] == torch.__version__ and ctx["cpu_model"]


def test_node_ids_are_stable_across_runs_only_times_differ():
    a = profile_model("tests.profiling._models:tiny_cnn", (1, 3, 16, 16), repeats=1, warmup=0)
    b = profile_model("tests.profiling._models:tiny_cnn", (1, 3, 16, 16), repeats=1, warmup=0)
    assert a.node_ids == b.node_ids
    assert [(e.src, e.dst, e.bytes) for e in a.edges] == [(e.src, e.dst, e.bytes) for e in b.edges]
    assert a.structure_id == b.structure_id
    assert [n.flops for n in a.nodes] == [n.flops for n in b.nodes]


def test_layer_granularity_groups_by_module_prefix():
    op = profile_model("torchvision:resnet18", (1, 3, 32, 32), repeats=1, warmup=0)
    again = profile_model("torchvision:resnet18", (1, 3, 32, 32), repeats=1, warmup=0)
    assert op.node_ids == again.node_ids and op.structure_id == again.structure_id
    assert op.node_ids[:4] == ("x", "conv1", "bn1", "relu") and "layer4_1_relu_1" in op.node_ids
    layer = profile_model("torchvision:resnet18", (1, 3, 32, 32), repeats=1, warmup=0, granularity="layer",
                          layer_depth=1)
    assert [n.id for n in layer.nodes] == ["x", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                           "layer4", "avgpool", "flatten", "fc"]
    assert layer.total_flops == op.total_flops and layer.total_param_bytes == op.total_param_bytes
    assert layer.meta["granularity"] == "layer" and layer.meta["layer_depth"] == 1
    depth2 = profile_model("torchvision:resnet18", (1, 3, 32, 32), repeats=1, warmup=0, granularity="layer")
    assert "layer1.0" in depth2.node_ids and "layer4.1" in depth2.node_ids


def test_export_fallback_is_recorded():
    g = profile_model("tests.profiling._models:shape_branch", (2, 8), repeats=1, warmup=0)
    assert g.meta["capture"] == "export" and "torch.fx.symbolic_trace" in g.meta["capture_notes"][0]
    assert g.total_flops == 2 * 2 * 8 * 4 and g.meta["params"] == 36


def test_batch_and_dtype():
    g = profile_model("tests.profiling._models:tiny_cnn", (1, 3, 8, 8), batch=4, dtype="bfloat16", repeats=1,
                      warmup=0)
    assert g.meta["input_shape"] == [4, 3, 8, 8] and g.meta["dtype"] == "bfloat16"
    assert g.nodes[0].output_bytes == 4 * 3 * 8 * 8 * 2
    assert g.total_param_bytes == 2 * g.meta["params"]


def test_parse_shape():
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224) == parse_shape("1x3x224x224")
    with pytest.raises(ProfileConfigError):
        parse_shape("1,a,3")
    with pytest.raises(ProfileConfigError):
        parse_shape("1,0")


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(spec="torchvision:resnet_nope"), UnknownModelError, "unknown torchvision model 'resnet_nope'"),
        (dict(spec="tests.profiling._models:broken_factory"), UnknownModelError,
         "raised RuntimeError: weights file corrupted"),
        (dict(spec="tests.profiling._models:data_dependent", input_shape=(4,)), UntraceableModelError,
         "cannot capture"),
        (dict(spec="tests.profiling._models:tiny_cnn", input_shape=(1, 5, 8, 8)), InputShapeError,
         r"rejected an input of shape \(1, 5, 8, 8\)"),
        (dict(spec="tests.profiling._models:tiny_cnn", granularity="block"), ProfileConfigError, "granularity"),
        (dict(spec="tests.profiling._models:tiny_cnn", repeats=0), ProfileConfigError, "repeats"),
        (dict(spec="tests.profiling._models:tiny_cnn", dtype="int8"), ProfileConfigError, "dtype"),
        (dict(spec="tests.profiling._models:tiny_cnn", link="carrier_pigeon"), UnknownLinkError, "carrier_pigeon"),
    ],
)
def test_bad_input_raises_one_clear_error(kwargs, error, message):
    kwargs.setdefault("input_shape", (1, 3, 8, 8))
    with pytest.raises(error, match=message):
        profile_model(repeats=kwargs.pop("repeats", 1), warmup=0, **kwargs)
