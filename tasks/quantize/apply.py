"""Apply a bit plan to a torch model (fake quantization) and measure its accuracy.

Weights of each planned layer are replaced by Q_b(W) (per-channel symmetric). With ``act_bits`` set, the input of
every quantized layer is fake-quantized per tensor to ``act_bits`` with a range calibrated on calibration batches
(layers kept in float keep float inputs). The returned model is a deep copy; the original is untouched, and module
names (FQNs) are unchanged, so the plan's layer names still address the same modules.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
import torch.nn as nn

from forgeflow.tasks.quantize.errors import QuantizeError, UnknownLayerError
from forgeflow.tasks.quantize.fakequant import ActivationObserver, fake_quantize_activation, fake_quantize_weight
from forgeflow.tasks.quantize.layers import quantizable_modules
from forgeflow.tasks.quantize.problem import FLOAT_BITS


@dataclass(frozen=True)
class QuantizedModel:
    """The fake-quantized copy and the calibrated activation ranges (layer -> (scale, zero point))."""

    model: nn.Module
    act_qparams: Mapping[str, tuple[float, int]]


def quantize_model(model: nn.Module, plan: Mapping[str, int], act_bits: int | None = 8,
                   calibration: Iterable[torch.Tensor] = (), percentile: float = 100.0,
                   act_qparams: Mapping[str, tuple[float, int]] | None = None) -> QuantizedModel:
    """A fake-quantized copy of ``model`` following ``plan`` (layer FQN -> bits, 32 = float).

    ``act_qparams`` (layer -> (scale, zero point)) fixes the activation ranges instead of calibrating them: a model
    fine-tuned quantization-aware with fixed ranges is deployed with exactly those ranges."""
    modules = quantizable_modules(model)
    unknown = sorted(set(plan) - set(modules))
    if unknown:
        raise UnknownLayerError(f"plan names unknown layer(s) {', '.join(map(repr, unknown[:5]))}; the model's "
                                f"quantizable layers are {', '.join(list(modules)[:8])}")
    if act_bits is not None and not 2 <= act_bits <= 16:
        raise QuantizeError(f"activation bit width must be in 2..16 (or None for float); got {act_bits}")
    qmodel = copy.deepcopy(model).eval()
    qmods = quantizable_modules(qmodel)
    with torch.no_grad():
        for name, bits in plan.items():
            if bits < FLOAT_BITS:
                w = qmods[name].weight
                w.copy_(fake_quantize_weight(w, int(bits)))
    qparams: dict[str, tuple[float, int]] = {}
    if act_bits is not None:
        targets = {n: m for n, m in qmods.items() if plan.get(n, FLOAT_BITS) < FLOAT_BITS}
        if act_qparams is not None:
            missing = sorted(set(targets) - set(act_qparams))
            if missing:
                raise QuantizeError(f"fixed activation ranges lack quantized layer(s) {', '.join(missing[:5])}")
            for n, m in targets.items():
                scale, zp = float(act_qparams[n][0]), int(act_qparams[n][1])
                qparams[n] = (scale, zp)
                m.register_forward_pre_hook(
                    lambda mod, inp, s=scale, z=zp: (fake_quantize_activation(inp[0], act_bits, s, z), *inp[1:]))
            return QuantizedModel(qmodel, qparams)
        observers = {n: ActivationObserver(percentile=percentile) for n in targets}
        handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: observers[n].observe(inp[0]))
                   for n, m in targets.items()]
        try:
            with torch.no_grad():
                seen = 0
                for x in calibration:
                    qmodel(x)
                    seen += 1
        finally:
            for h in handles:
                h.remove()
        if targets and seen == 0:
            raise QuantizeError("activation quantization needs at least one calibration batch")
        for n, m in targets.items():
            scale, zp = observers[n].qparams(act_bits)
            qparams[n] = (scale, zp)
            m.register_forward_pre_hook(
                lambda mod, inp, s=scale, z=zp: (fake_quantize_activation(inp[0], act_bits, s, z), *inp[1:]))
    return QuantizedModel(qmodel, qparams)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] on held-out data."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)
