"""Graph capture (fx / export fallback) and per-node FLOP / parameter / byte accounting against torch's totals."""

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from forgeflow.tasks.profiling.capture import capture_graph, run_eager
from forgeflow.tasks.profiling.costs import node_costs, reference_flops, stock_flops
from forgeflow.tasks.profiling.errors import InputShapeError, ProfileConfigError, UntraceableModelError
from tests.profiling import _models


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fx_is_preferred_and_keeps_module_paths():
    m = _models.tiny_cnn().eval()
    x = torch.randn(2, 3, 16, 16)
    cap = capture_graph(m, (x,))
    assert cap.method == "fx" and cap.notes == ()
    costs = node_costs(cap.gm, (x,))
    assert [(c.name, c.op, c.module) for c in costs.values()][:3] == \
        [("input_1", "input", ""), ("_0", "Conv2d", "0"), ("_1", "BatchNorm2d", "1")]
    conv = costs["_0"]
    assert conv.flops == 2 * (2 * 8 * 16 * 16) * (3 * 3 * 3)  # 2 x MACs (bias adds are not counted by torch)
    assert conv.param_count == 8 * 3 * 9 + 8 and conv.param_bytes == 4 * conv.param_count
    assert conv.output_bytes == 2 * 8 * 16 * 16 * 4 and conv.is_tensor
    assert costs["_1"].buffer_bytes == 4 * (8 + 8) + 8  # running mean/var (fp32) + num_batches_tracked (int64)


def test_falls_back_to_export_with_a_note():
    m = _models.ShapeBranch().eval()
    cap = capture_graph(m, (torch.randn(3, 8),))
    assert cap.method == "export"
    assert len(cap.notes) == 1 and cap.notes[0].startswith("torch.fx.symbolic_trace could not trace")
    costs = node_costs(cap.gm, (torch.randn(3, 8),))
    assert sum(c.flops for c in costs.values()) == 2 * 3 * 8 * 4
    assert sum(c.param_count for c in costs.values()) == 8 * 4 + 4
    assert any(c.module == "fc" for c in costs.values())


def test_untraceable_model_names_both_tracers():
    with pytest.raises(UntraceableModelError, match="torch.fx.symbolic_trace could not trace.*torch.export could not"):
        capture_graph(_models.DataDependent().eval(), (torch.randn(4),))


def test_forced_method_and_bad_method():
    m = _models.tiny_cnn().eval()
    x = torch.randn(1, 3, 8, 8)
    assert capture_graph(m, (x,), method="export").method == "export"
    with pytest.raises(ProfileConfigError, match="capture method"):
        capture_graph(m, (x,), method="jit")
    with pytest.raises(UntraceableModelError, match="^cannot capture"):
        capture_graph(_models.ShapeBranch().eval(), (torch.randn(3, 8),), method="fx")


def test_shape_mismatch_is_one_clear_error():
    with pytest.raises(InputShapeError, match=r"rejected an input of shape \(1, 3, 8\) float32"):
        run_eager(_models.tiny_cnn().eval(), (torch.randn(1, 3, 8),))


def test_shared_module_parameters_counted_once():
    m = _models.SharedLinear().eval()
    x = torch.randn(2, 16)
    cap = capture_graph(m, (x,))
    costs = node_costs(cap.gm, (x,))
    assert sum(c.param_count for c in costs.values()) == sum(p.numel() for p in m.parameters()) == 16 * 16 + 16 + 16
    assert sum(c.flops for c in costs.values()) == reference_flops(m, (x,)) == 2 * 2 * (2 * 16 * 16)


@pytest.mark.parametrize("name,flops,params", [("resnet18", 3_628_146_688, 11_689_512),
                                               ("mobilenet_v2", 601_548_544, 3_504_872)])
def test_torchvision_totals_equal_flopcountermode_and_parameter_count(name, flops, params):
    m = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    cap = capture_graph(m, (x,))
    costs = node_costs(cap.gm, (x,))
    fc = FlopCounterMode(display=False)
    with fc:
        m(x)
    assert sum(c.flops for c in costs.values()) == fc.get_total_flops() == flops
    assert sum(c.param_count for c in costs.values()) == sum(p.numel() for p in m.parameters()) == params


def test_attention_flops_include_the_cpu_sdpa_kernel():
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    m, x = Block().eval(), torch.randn(1, 10, 32)
    projections = 2 * 10 * 32 * (3 * 32) + 2 * 10 * 32 * 32  # in-proj and out-proj
    attention = 2 * (2 * 4 * 10 * 10 * 8)  # q@k^T and attn@v over 4 heads of dim 8
    assert reference_flops(m, (x,)) == projections + attention
    assert stock_flops(m, (x,)) == projections  # the stock counter misses the CPU flash-attention kernel
    cap = capture_graph(m, (x,))
    assert sum(c.flops for c in node_costs(cap.gm, (x,)).values()) == projections + attention
