"""The integer executor against torch's fake-quant model, the rounding rule and the argmax tie rule."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from forgeflow.tasks.models.digits import DigitsCNN, DigitsMLP
from forgeflow.tasks.verify.intnet import Layer, QNetwork, Requant, network_json
from tests.verify.nets import trained, tiny_network


def _codes_at_quantizers(qm, x):
    """The codes torch's fake-quant model feeds each quantized layer (input hooks)."""
    caps = {}
    hooks = []
    for name, mod in qm.model.named_modules():
        if name in qm.act_qparams:
            s, z = qm.act_qparams[name]
            hooks.append(mod.register_forward_pre_hook(
                lambda m, inp, n=name, s=s, z=z: caps.__setitem__(
                    n, (torch.round(inp[0].double() / np.float32(s)) + z).flatten(1).numpy())))
    with torch.no_grad():
        logits = qm.model(x)
    for h in hooks:
        h.remove()
    return caps, logits


def _check_agreement(m, qm, net, x):
    """Every code torch computes equals the executor's, except where the exact pre-activation is within float32
    error of a rounding boundary (the one documented difference)."""
    q = net.codes_of(x.numpy())
    caps, logits = _codes_at_quantizers(qm, x)
    names = [L.name for L in net.layers]
    np.testing.assert_array_equal(caps[names[0]], q)
    _, outs = net.forward(q, trace=True)
    mismatched_images = set()
    for k, L in enumerate(net.layers[:-1]):
        torch_codes = caps[names[k + 1]]
        diff = np.argwhere(torch_codes != outs[k])
        for i, j in diff:
            mismatched_images.add(int(i))
            assert abs(torch_codes[i, j] - outs[k][i, j]) == 1
        if len(diff):  # explain each: the pre-pool neuron's exact u is within float32 error of a half-integer
            acc = (q if k == 0 else outs[k - 1]) - L.in_zero_point
            u = ((acc @ L.weight.T) * L.mult + L.bias) * L.requant.inv_scale
            mag = ((np.abs(acc) @ np.abs(L.weight).T) * np.abs(L.mult) + np.abs(L.bias)) * L.requant.inv_scale
            dist = np.abs(u - np.floor(u) - 0.5)
            for i, j in diff:
                win = L.pool[j] if L.pool is not None else [j]
                assert min(dist[i, w] / (mag[i, w] + 1) for w in win) < 1e-5, "unexplained code mismatch"
    pred = net.predict(q)
    agree = pred == logits.argmax(1).numpy()
    assert all(i in mismatched_images for i in np.flatnonzero(~agree))
    return len(mismatched_images), int((~agree).sum())


def test_executor_matches_fake_quant_mlp_bit_for_bit():
    m, qm, net, xte, yte = trained(DigitsMLP(32), bits=8, epochs=2)
    n_code, n_pred = _check_agreement(m, qm, net, xte)
    # bit for bit, except the rare codes whose exact pre-activation is within float32 error of a rounding boundary
    # (each one explained in _check_agreement; which ones occur depends on torch's summation order and threads)
    assert n_pred <= n_code <= 3
    # random lattice points far from the data, too
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, size=(300, 64))
    x = torch.tensor((q - net.input_zero_point) * net.input_scale, dtype=torch.float32).reshape(-1, 1, 8, 8)
    _check_agreement(m, qm, net, x)


@pytest.mark.slow
def test_executor_matches_fake_quant_cnn_4bit_weights():
    m, qm, net, xte, yte = trained(DigitsCNN(8), bits=4, epochs=1)
    assert net.layers[0].kind == "Conv2d" and net.layers[0].pool is not None
    assert np.abs(net.layers[1].export["weight"]).max() <= 7  # really 4-bit codes
    n_code, n_pred = _check_agreement(m, qm, net, xte)
    assert n_pred <= n_code <= 3  # the rare near-boundary cases, each explained above


def test_rounding_is_half_to_even_like_torch():
    # u = acc * 0.5: acc = 1, 3, 5, 7 give 0.5, 1.5, 2.5, 3.5 -> torch rounds to 0, 2, 2, 4
    rq = Requant(scale=1.0, inv_scale=1.0, zero_point=0, lo=0, hi=15, bits=4)
    l1 = Layer("a", "Linear", np.array([[1]]), 0, np.array([0.5]), np.array([0.0]), True, rq)
    l2 = Layer("b", "Linear", np.array([[1], [0]]), 0, np.array([1.0, 1.0]), np.array([0.0, 0.0]), False, None)
    net = QNetwork((l1, l2), (1,), 1.0, 0, 4)
    q = np.array([[1], [3], [5], [7]])
    _, outs = net.forward(q, trace=True)
    expect = torch.fake_quantize_per_tensor_affine(torch.tensor([0.5, 1.5, 2.5, 3.5]), 1.0, 0, 0, 15).numpy()
    np.testing.assert_array_equal(outs[0][:, 0], expect)
    np.testing.assert_array_equal(outs[0][:, 0], [0, 2, 2, 4])


def test_argmax_tie_rule_is_first_index_and_exact():
    # logits (acc * 0.1, 0.3 - 0.1 * ...) tie exactly in rationals but not in float64 sums: decided exactly
    l1 = Layer("b", "Linear", np.array([[1], [1], [0]]), 0, np.array([0.25, 0.25, 1.0]), np.array([0.0, 0.0, 0.5]),
               False, None)
    net = QNetwork((l1,), (1,), 1.0, 0, 4)
    q = np.array([[2], [3]])  # q=2: logits 0.5, 0.5, 0.5 -> class 0; q=3: 0.75, 0.75, 0.5 -> class 0
    assert net.predict(q).tolist() == [0, 0]
    assert net.keeps_label(q, 0).all() and not net.keeps_label(q, 1).any()
    assert net.exact_logits(q[:1])[0] == [Fraction(1, 2)] * 3


def test_network_json_documents_every_layer():
    net = tiny_network(0)
    doc = network_json(net)
    assert doc["rounding"].startswith("half_to_even") and "first" in doc["argmax_tie_rule"]
    assert [L["name"] for L in doc["layers"]] == ["fc1", "fc2"]
    assert doc["layers"][0]["requant"]["clamp"] == [0, 7] and doc["input"]["qmax"] == 15
