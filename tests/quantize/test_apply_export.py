"""Applying a plan to a model, exporting it (JSON, torchao), and the catalog pipeline's validation."""

from __future__ import annotations

import json

import pytest
import torch

from forgeflow.tasks.models.digits import DigitsCNN
from forgeflow.tasks.quantize.apply import evaluate_accuracy, quantize_model
from forgeflow.tasks.quantize.errors import BudgetInfeasibleError, NoQuantizableLayerError, QuantizeError, UnknownLayerError
from forgeflow.tasks.quantize.export import apply_torchao, plan_json, torchao_config_data, torchao_unsupported
from forgeflow.tasks.quantize.fakequant import fake_quantize_weight
from forgeflow.tasks.quantize.pipeline import QuantizeRequest, validate_request


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return DigitsCNN().eval()


def test_weights_follow_the_plan_and_the_original_is_untouched(cnn):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    plan = {"conv1": 8, "conv2": 3, "fc": 32}
    q = quantize_model(cnn, plan, act_bits=None).model
    assert torch.equal(q.conv2.weight, fake_quantize_weight(before["conv2.weight"], 3))
    assert torch.equal(q.conv1.weight, fake_quantize_weight(before["conv1.weight"], 8))
    assert torch.equal(q.fc.weight, before["fc.weight"])
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())
    assert len(torch.unique(q.conv2.weight[0])) <= 7  # 3 bits: levels -3..3


def test_activation_quantization_is_calibrated_and_applied(cnn):
    x = torch.rand(64, 1, 8, 8)
    plan = {"conv1": 32, "conv2": 8, "fc": 8}
    qm = quantize_model(cnn, plan, act_bits=4, calibration=[x])
    assert set(qm.act_qparams) == {"conv2", "fc"}  # the float layer keeps float inputs
    seen = {}
    qm.model.fc.register_forward_pre_hook(lambda m, inp: seen.setdefault("fc", inp[0].clone()))
    with torch.no_grad():
        qm.model(x)
    scale, zp = qm.act_qparams["fc"]
    assert scale > 0
    # the input the fc layer sees after the quantization hook sits on the 4-bit grid
    levels = torch.unique(torch.round(seen["fc"] / scale + zp))
    assert levels.numel() <= 16
    weights_only = quantize_model(cnn, plan, act_bits=None).model
    assert not torch.allclose(qm.model(x), weights_only(x))
    with pytest.raises(QuantizeError, match="calibration batch"):
        quantize_model(cnn, plan, act_bits=8, calibration=[])


def test_plan_with_unknown_layer_is_one_clear_error(cnn):
    with pytest.raises(UnknownLayerError, match="'conv3'"):
        quantize_model(cnn, {"conv3": 4}, act_bits=None)


def test_accuracy_is_a_fraction(cnn):
    x, y = torch.rand(20, 1, 8, 8), torch.arange(20) % 10
    acc = evaluate_accuracy(cnn, x, y)
    assert 0.0 <= acc <= 1.0 and acc * 20 == round(acc * 20)


def test_exports(cnn):
    plan = {"conv1": 8, "conv2": 4, "fc": 4}
    data = json.loads(plan_json(plan, model="forgeflow:digits_cnn", act_bits=8))
    assert data["layers"] == plan and data["act_bits"] == 8
    cfg = torchao_config_data(cnn, plan)
    assert cfg == {"fc": {"config": "IntxWeightOnlyConfig",
                          "kwargs": {"weight_dtype": "torch.int4", "granularity": "PerAxis(axis=0)",
                                     "mapping_type": "MappingType.SYMMETRIC"}}}
    assert set(torchao_unsupported(cnn, plan)) == {"conv1", "conv2"}
    assert torchao_config_data(cnn, {"conv1": 32, "conv2": 32, "fc": 32}) == {}


def test_torchao_quantizes_the_linear_layer_like_the_fake_quant(cnn):
    import copy

    x = torch.rand(8, 1, 8, 8)
    ao = apply_torchao(copy.deepcopy(cnn), {"fc": 8})
    assert "Intx" in type(ao.fc.weight).__name__  # torchao's integer weight tensor, not a float parameter
    fq = quantize_model(cnn, {"fc": 8}, act_bits=None).model
    with torch.no_grad():
        assert torch.allclose(ao(x), fq(x), atol=1e-2)


def test_request_validation_before_any_run():
    digits = "forgeflow:digits_cnn"
    with pytest.raises(BudgetInfeasibleError, match="smallest achievable model size is 2740 bytes"):
        validate_request(QuantizeRequest(model=digits, size_budget=1000))
    with pytest.raises(UnknownLayerError, match="'conv9'"):
        validate_request(QuantizeRequest(model=digits, ties=(("conv1", "conv9"),)))
    with pytest.raises(NoQuantizableLayerError):
        validate_request(QuantizeRequest(model="torch.nn:Identity"))
    with pytest.raises(QuantizeError, match="--latency-table"):
        validate_request(QuantizeRequest(model=digits, latency_budget=1.0))
    with pytest.raises(QuantizeError, match="exactly one"):
        validate_request(QuantizeRequest())
    # pinning both ends to 8 bits raises the smallest size: 2740 + (8-2) * (144 + 1280) / 8 bytes
    with pytest.raises(BudgetInfeasibleError, match="3808 bytes"):
        validate_request(QuantizeRequest(model=digits, size_budget=3000, pin_ends=8))
    validate_request(QuantizeRequest(model=digits, size_budget=4000, bops_budget=5e6))


def test_user_dataset_path_and_a_mismatched_one(tmp_path):
    import numpy as np

    from forgeflow.tasks.quantize.pipeline import load_data

    rng = np.random.default_rng(0)
    good = tmp_path / "flat.npz"
    np.savez(good, x=rng.random((40, 64)).astype(np.float32), y=rng.integers(0, 10, 40))
    xtr, ytr, xte, yte = load_data(str(good), seed=1)
    assert len(xtr) == 30 and len(xte) == 10 and xtr.shape[1:] == (64,)
    validate_request(QuantizeRequest(model="forgeflow:digits_mlp", dataset=str(good), size_budget=5000))
    bad = tmp_path / "wide.npz"
    np.savez(bad, x=rng.random((40, 3, 5, 5)).astype(np.float32), y=rng.integers(0, 10, 40))
    with pytest.raises(QuantizeError, match=r"cannot run on the data \(input shape \(3, 5, 5\)\)"):
        validate_request(QuantizeRequest(model="forgeflow:digits_cnn", dataset=str(bad)))
