"""Fake quantization against torch's own kernels, perturbations, and activation observers."""

from __future__ import annotations

import pytest
import torch

from forgeflow.tasks.quantize.errors import QuantizeError
from forgeflow.tasks.quantize.fakequant import (ActivationObserver, fake_quantize_activation, fake_quantize_weight,
                                      per_channel_scale, symmetric_qmax, weight_perturbation)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("clip", ["max", "mse"])
@pytest.mark.parametrize("shape,axis", [((16, 8, 3, 3), 0), ((10, 32), 0), ((32, 10), 1)])
def test_matches_torch_fake_quantize_per_channel_affine(bits, clip, shape, axis):
    g = torch.Generator().manual_seed(bits * 7 + len(shape))
    w = torch.randn(shape, generator=g) * torch.rand(shape[axis], generator=g).reshape(
        [-1 if d == axis else 1 for d in range(len(shape))])
    scale = per_channel_scale(w, bits, axis, clip)
    qmax = symmetric_qmax(bits)
    expected = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), axis,
                                                      -qmax, qmax)
    got = fake_quantize_weight(w, bits, axis, clip)
    assert torch.equal(got, expected)
    # at most 2**bits - 1 distinct levels per channel, symmetric around 0
    levels = torch.unique(torch.round(got.movedim(axis, 0)[0] / scale[0]))
    assert levels.numel() <= 2 * qmax + 1 and levels.abs().max() <= qmax


def test_max_clipping_scale_is_max_abs_over_qmax():
    w = torch.tensor([[0.5, -1.5, 0.25], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]])
    scale = per_channel_scale(w, 4, 0, "max")
    assert torch.allclose(scale, torch.tensor([1.5 / 7, 1.0, 3.0 / 7]))  # an all-zero channel gets scale 1
    q = fake_quantize_weight(w, 4, 0, "max")
    assert q[0, 1] == pytest.approx(-1.5) and q[2, 0] == pytest.approx(3.0) and torch.all(q[1] == 0)


def test_mse_clipping_never_increases_the_perturbation():
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    w[0, 0] = 12.0  # an outlier: clipping pays off
    for bits in (2, 3, 4):
        assert weight_perturbation(w, bits, clip="mse") <= weight_perturbation(w, bits, clip="max") + 1e-9
    assert weight_perturbation(w, 2, clip="mse") < 0.8 * weight_perturbation(w, 2, clip="max")


def test_perturbation_shrinks_with_bits_and_float_is_exact():
    w = torch.randn(8, 27, generator=torch.Generator().manual_seed(1))
    p = [weight_perturbation(w, b) for b in (2, 3, 4, 8)]
    assert p == sorted(p, reverse=True) and p[-1] < 1e-3 * p[0]
    assert weight_perturbation(w, 32) == 0.0 and torch.equal(fake_quantize_weight(w, 32), w)
    with pytest.raises(QuantizeError, match="2..16"):
        fake_quantize_weight(w, 1)


def test_activation_observer_and_torch_kernel():
    obs = ActivationObserver()
    obs.observe(torch.tensor([0.0, 1.0, 2.0]))
    obs.observe(torch.tensor([0.5, 5.1]))
    scale, zp = obs.qparams(8)
    assert scale == pytest.approx(5.1 / 255) and zp == 0
    x = torch.tensor([0.0, 2.55, 5.1, 7.0])
    y = fake_quantize_activation(x, 8, scale, zp)
    assert y[-1] == pytest.approx(5.1)  # clamped to the calibrated range
    assert torch.allclose(y[:3], x[:3], atol=scale / 2 + 1e-7)
    neg = ActivationObserver()
    neg.observe(torch.tensor([-1.0, 3.0]))
    s, z = neg.qparams(4)
    assert s == pytest.approx(4.0 / 15) and z == round(1.0 / s)
    with pytest.raises(QuantizeError, match="never calibrated"):
        ActivationObserver().qparams(8)
