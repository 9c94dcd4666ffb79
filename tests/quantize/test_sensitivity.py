"""Hutchinson's trace against closed-form Hessian traces, and layer discovery."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from forgeflow.tasks.quantize.errors import NoQuantizableLayerError
from forgeflow.tasks.quantize.layers import describe_layers
from forgeflow.tasks.quantize.sensitivity import hutchinson_traces, layer_sensitivities


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 5, bias=False)
        self.b = nn.Linear(5, 3, bias=False)

    def forward(self, x):
        return self.b(self.a(x))


def test_traces_match_closed_form_for_a_linear_least_squares_model():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = TwoLinear()
    x, t = torch.randn(64, 6), torch.randn(64, 3)
    n, m = x.shape[0], t.shape[1]
    # L = mean over n, m of (W_b W_a x - t)^2. Block traces:
    #   tr H_bb = 2/(n m) * m * sum ||W_a x||^2 ;   tr H_aa = 2/(n m) * sum ||x||^2 * ||W_b||_F^2
    with torch.no_grad():
        h = model.a(x)
        exact_b = 2.0 / n * float((h ** 2).sum())
        exact_a = 2.0 / (n * m) * float((x ** 2).sum()) * float((model.b.weight ** 2).sum())
    est = hutchinson_traces(model, [(x, t)], loss_fn=nn.MSELoss(), max_samples=400, min_samples=400,
                            probes_per_batch=400, seed=0)
    for name, exact in (("a", exact_a), ("b", exact_b)):
        mean, se, samples = est[name]
        assert samples == 400
        assert abs(mean - exact) <= 5 * se + 1e-6, (name, mean, exact, se)
        assert abs(mean - exact) <= 0.1 * exact


def test_layer_sensitivities_and_layers_of_a_cnn():
    from forgeflow.tasks.models.digits import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    infos, base = describe_layers(model, x)
    assert [(i.name, i.weight_numel, i.macs) for i in infos] == [
        ("conv1", 144, 16 * 8 * 8 * 9), ("conv2", 4608, 32 * 4 * 4 * 16 * 9), ("fc", 1280, 10 * 128)]
    assert base == 4.0 * (4 * 16 + 4 * 32)  # BN weight/bias/running mean/var in float32 (int counters excluded)
    assert infos[0].size_bytes(4) == 144 * 4 / 8 + 4 * (16 + 16) and infos[0].size_bytes(32) == 4 * 160
    sens = layer_sensitivities(model, [(x, y)], bits=(2, 4, 8), max_samples=16)
    assert [s.name for s in sens] == ["conv1", "conv2", "fc"]
    for s in sens:
        assert set(s.perturbation) == {2, 4, 8, 32} and s.perturbation[32] == 0.0
        assert s.perturbation[2] > s.perturbation[4] > s.perturbation[8] > 0
        assert s.samples == 16 and s.cost(8) <= s.cost(2)


def test_model_without_quantizable_layer_is_one_clear_error():
    with pytest.raises(NoQuantizableLayerError, match="no quantizable layer"):
        describe_layers(nn.Sequential(nn.ReLU(), nn.Flatten()), torch.rand(1, 4))
