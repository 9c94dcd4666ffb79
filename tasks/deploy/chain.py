"""A subnet as a chain of pipeline units: the granularity at which stages are cut and bit widths chosen.

An extracted elastic subnet is ``resize -> stem -> block_1 .. block_B -> pool + head``; each of those (the resize
folded into the stem) is one *unit*. A unit is described by a small JSON-able spec, so a stage (a contiguous range
of units) can be rebuilt from its spec plus a safetensors file of its weights without pickles (``build_units``).
``Chain`` is the unsplit model: an ``nn.Sequential`` of the units, computing exactly what the ``Subnet`` computes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from forgeflow.tasks.supernet.space import ElasticArch
from forgeflow.tasks.supernet.supernet import ElasticSupernet, InvertedResidual, Resize, _StemBlock, extract_subnet


class StemUnit(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, side: int) -> None:
        super().__init__()
        self.resize = Resize(side)
        self.stem = _StemBlock(nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(self.resize(x))


class HeadUnit(nn.Module):
    def __init__(self, in_features: int, classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(in_features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_unit(spec: dict[str, Any]) -> nn.Module:
    kind = spec["kind"]
    if kind == "stem":
        return StemUnit(spec["in_ch"], spec["out_ch"], spec["side"])
    if kind == "block":
        return InvertedResidual(spec["in_ch"], spec["hidden"], spec["out_ch"], spec["stride"], spec["kernel"])
    if kind == "head":
        return HeadUnit(spec["in_features"], spec["classes"])
    raise ValueError(f"unknown unit kind {kind!r}")


def build_units(specs: list[dict[str, Any]]) -> nn.Sequential:
    """A fresh (untrained) ``nn.Sequential`` of the units described by ``specs``; load weights with
    ``load_state_dict``."""
    return nn.Sequential(*[build_unit(s) for s in specs])


def unit_specs(net: ElasticSupernet, arch: ElasticArch) -> list[dict[str, Any]]:
    cfg = net.config
    specs: list[dict[str, Any]] = [{"kind": "stem", "name": "stem", "in_ch": cfg.in_channels,
                                    "out_ch": cfg.stem_channels, "side": arch.resolution}]
    for s, stage in enumerate(net.stages):
        for b in range(arch.depth[s]):
            blk = stage[b]
            specs.append({"kind": "block", "name": f"s{s}b{b}", "in_ch": blk.in_ch,
                          "hidden": blk.in_ch * arch.expand[s][b], "out_ch": blk.out_ch, "stride": blk.stride,
                          "kernel": arch.kernel[s][b]})
    specs.append({"kind": "head", "name": "head", "in_features": net.head.in_features,
                  "classes": net.head.out_features})
    return specs


@torch.no_grad()
def extract_chain(net: ElasticSupernet, arch: ElasticArch) -> tuple[nn.Sequential, list[dict[str, Any]]]:
    """The subnet of ``arch`` as a chain of units (weights copied from ``extract_subnet``) and the units' specs."""
    sub = extract_subnet(net, arch)
    specs = unit_specs(net, arch)
    chain = build_units(specs)
    chain[0].stem.load_state_dict(sub.stem.state_dict())
    for i, blk in enumerate(sub.blocks):
        chain[1 + i].load_state_dict(blk.state_dict())
    chain[-1].head.load_state_dict(sub.head.state_dict())
    chain.train(sub.training)
    return chain, specs


def unit_shapes(chain: nn.Sequential, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The output shape of every unit for an input of ``input_shape`` (batch included)."""
    shapes = []
    x = torch.zeros(input_shape)
    with torch.no_grad():
        for unit in chain:
            x = unit(x)
            shapes.append(tuple(x.shape))
    return shapes
