"""The quantizable layers of a torch model: Conv1d/2d/3d and Linear weights, their sizes and MACs.

MACs are measured with forward hooks on one example input (batch 1): a convolution costs
``output elements x in_channels / groups x kernel volume``, a linear layer ``output elements x in_features``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from forgeflow.tasks.quantize.errors import NoQuantizableLayerError

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class LayerInfo:
    """One quantizable layer: its FQN, type, weight element count, output channels, bias elements and MACs at
    batch 1 (multiply-accumulates; FLOPs = 2 x MACs)."""

    name: str
    kind: str
    weight_numel: int
    out_channels: int
    bias_numel: int
    macs: int

    def size_bytes(self, bits: int) -> float:
        """Stored bytes at ``bits``: packed weights, a float32 scale per output channel (when quantized) and the
        bias kept in float32."""
        if bits >= 32:
            return 4.0 * (self.weight_numel + self.bias_numel)
        return self.weight_numel * bits / 8 + 4.0 * (self.out_channels + self.bias_numel)


def quantizable_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, QUANTIZABLE) and name}


def describe_layers(model: nn.Module, example_input: torch.Tensor) -> tuple[list[LayerInfo], float]:
    """The quantizable layers in module order, and the float32 bytes of every other parameter and buffer
    (the part of the model size no bit plan changes). Raises NoQuantizableLayerError when there is none."""
    modules = quantizable_modules(model)
    if not modules:
        raise NoQuantizableLayerError(
            f"model {type(model).__name__} has no quantizable layer (Conv1d/Conv2d/Conv3d/Linear with a weight)")
    macs: dict[str, int] = {}

    def hook(name):
        def fn(mod, inputs, output):
            out = output.numel() // max(output.shape[0], 1) if output.dim() > 1 else output.numel()
            if isinstance(mod, nn.Linear):
                macs[name] = macs.get(name, 0) + out * mod.in_features
            else:
                k = int(torch.tensor(mod.kernel_size).prod())
                macs[name] = macs.get(name, 0) + out * (mod.in_channels // mod.groups) * k
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    infos = []
    quantized_params = set()
    for name, m in modules.items():
        quantized_params.add(id(m.weight))
        if getattr(m, "bias", None) is not None:
            quantized_params.add(id(m.bias))
        infos.append(LayerInfo(name=name, kind=type(m).__name__, weight_numel=int(m.weight.numel()),
                               out_channels=int(m.weight.shape[0]),
                               bias_numel=int(m.bias.numel()) if getattr(m, "bias", None) is not None else 0,
                               macs=int(macs.get(name, 0))))
    other = sum(4.0 * p.numel() for p in model.parameters() if id(p) not in quantized_params)
    other += sum(4.0 * b.numel() for _, b in model.named_buffers() if b.is_floating_point())
    return infos, other
