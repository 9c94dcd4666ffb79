"""A once-for-all style elastic supernet (MobileNetV3-like inverted residual blocks) and subnet extraction.

Elastic dimensions, all sharing one set of weights:

* input resolution: the input is resized (bilinear) to the chosen side before the stem;
* depth per stage: a stage runs its first ``d`` blocks;
* expand ratio per block: the inverted bottleneck uses the first ``in_ch * e`` hidden channels of the largest one;
* kernel size per block: the depthwise kernel is the centre ``k x k`` crop of the largest kernel.

Batch norm over a width subset uses the first channels' affine parameters and running statistics, so the supernet set
to an architecture computes exactly what ``extract_subnet(arch)`` (plain Conv2d / BatchNorm2d with copied weights)
computes; ``test_supernet.py`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from forgeflow.tasks.supernet.space import ElasticArch, ElasticSpace


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, channels: int) -> torch.Tensor:
    """Batch norm over the first ``channels`` channels of ``bn`` (running stats updated in place when training)."""
    if channels == bn.num_features:
        return bn(x)
    training = bn.training or bn.running_mean is None
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    running_mean = bn.running_mean[:channels] if bn.running_mean is not None else None
    running_var = bn.running_var[:channels] if bn.running_var is not None else None
    out = F.batch_norm(x, running_mean, running_var, bn.weight[:channels], bn.bias[:channels], training, momentum, bn.eps)
    return out


class ElasticBlock(nn.Module):
    """Inverted residual: 1x1 expand -> BN -> ReLU6 -> depthwise k x k -> BN -> ReLU6 -> 1x1 project -> BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, max_expand: int, max_kernel: int) -> None:
        super().__init__()
        hidden = in_ch * max_expand
        self.in_ch, self.out_ch, self.stride, self.max_kernel = in_ch, out_ch, stride, max_kernel
        self.expand = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, max_kernel, stride, max_kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.residual = stride == 1 and in_ch == out_ch
        self.active_expand, self.active_kernel = max_expand, max_kernel

    def kernel(self, k: int) -> torch.Tensor:
        lo = (self.max_kernel - k) // 2
        return self.depthwise.weight[:, :, lo : lo + k, lo : lo + k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, k = self.in_ch * self.active_expand, self.active_kernel
        h = F.conv2d(x, self.expand.weight[:hidden])
        h = F.relu6(_bn(h, self.bn1, hidden))
        h = F.conv2d(h, self.kernel(k)[:hidden], None, self.stride, k // 2, 1, hidden)
        h = F.relu6(_bn(h, self.bn2, hidden))
        h = F.conv2d(h, self.project.weight[:, :hidden])
        h = _bn(h, self.bn3, self.out_ch)
        return x + h if self.residual else h


@dataclass(frozen=True)
class SupernetConfig:
    in_channels: int = 1
    num_classes: int = 10
    stem_channels: int = 8
    stage_channels: tuple[int, ...] = (8, 16, 24)
    stage_strides: tuple[int, ...] = (1, 2, 2)
    space: ElasticSpace = ElasticSpace()

    def validate(self) -> None:
        if len(self.stage_channels) != len(self.stage_strides) or len(self.stage_channels) != self.space.n_stages:
            raise ValueError("stage_channels, stage_strides and the space's stages must have the same length")


class ElasticSupernet(nn.Module):
    def __init__(self, config: SupernetConfig = SupernetConfig()) -> None:
        super().__init__()
        config.validate()
        self.config = config
        sp = config.space
        self.stem = nn.Conv2d(config.in_channels, config.stem_channels, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(config.stem_channels)
        stages = []
        in_ch = config.stem_channels
        for out_ch, stride in zip(config.stage_channels, config.stage_strides):
            blocks = []
            for b in range(sp.max_depth):
                blocks.append(ElasticBlock(in_ch, out_ch, stride if b == 0 else 1, max(sp.expand_ratios), max(sp.kernel_sizes)))
                in_ch = out_ch
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(in_ch, config.num_classes)
        self.active: ElasticArch = sp.largest()
        self.set_active(self.active)

    def set_active(self, arch: ElasticArch) -> None:
        self.config.space.check(arch)
        self.active = arch
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                block.active_expand, block.active_kernel = arch.expand[s][b], arch.kernel[s][b]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch = self.active
        x = resize_input(x, arch.resolution)
        x = F.relu6(self.stem_bn(self.stem(x)))
        for s, stage in enumerate(self.stages):
            for b in range(arch.depth[s]):
                x = stage[b](x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def plain_nchw(x: torch.Tensor) -> torch.Tensor:
    """``x`` with plain NCHW strides (a copy only when it has other strides).

    A single-channel batch can carry strides that are valid for NCHW and channels_last at once (the digits tensors
    have (64, 1, 8, 1)). ``x.contiguous()`` keeps them, ``F.interpolate`` turns them into a real channels_last
    output, and every later conv then runs channels_last kernels, which round differently from the NCHW ones. A
    deployed stage gets NCHW (from a file or a pipe), and the activation fake-quantizers turn those one-ulp
    differences into whole quantization steps. So every model input is brought to one layout first."""
    n, c, h, w = x.shape
    if x.stride() != (c * h * w, h * w, w, 1):
        return torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x)
    return x


def resize_input(x: torch.Tensor, side: int) -> torch.Tensor:
    x = plain_nchw(x)
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


class Resize(nn.Module):
    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_input(x, self.side)


class InvertedResidual(nn.Module):
    """The standalone (non-elastic) block an extracted subnet is made of."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int, stride: int, kernel: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.bn1(self.expand(x)))
        h = F.relu6(self.bn2(self.depthwise(h)))
        h = self.bn3(self.project(h))
        return x + h if self.residual else h


class Subnet(nn.Module):
    def __init__(self, side: int, stem: nn.Module, blocks: list[nn.Module], head: nn.Linear) -> None:
        super().__init__()
        self.resize = Resize(side)
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.resize(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _StemBlock(nn.Module):
    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.bn(self.conv(x)))


def _copy_bn(src: nn.BatchNorm2d, channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=src.eps, momentum=src.momentum)
    bn.weight.data.copy_(src.weight.data[:channels])
    bn.bias.data.copy_(src.bias.data[:channels])
    bn.running_mean.copy_(src.running_mean[:channels])
    bn.running_var.copy_(src.running_var[:channels])
    bn.num_batches_tracked.copy_(src.num_batches_tracked)
    return bn


@torch.no_grad()
def extract_subnet(supernet: ElasticSupernet, arch: ElasticArch) -> Subnet:
    """A standalone ``nn.Module`` for ``arch`` with weights copied (not shared) from the supernet."""
    supernet.config.space.check(arch)
    stem = nn.Conv2d(supernet.stem.in_channels, supernet.stem.out_channels, 3, 1, 1, bias=False)
    stem.weight.data.copy_(supernet.stem.weight.data)
    blocks: list[nn.Module] = []
    for s, stage in enumerate(supernet.stages):
        for b in range(arch.depth[s]):
            src: ElasticBlock = stage[b]
            hidden, k = src.in_ch * arch.expand[s][b], arch.kernel[s][b]
            blk = InvertedResidual(src.in_ch, hidden, src.out_ch, src.stride, k)
            blk.expand.weight.data.copy_(src.expand.weight.data[:hidden])
            blk.bn1 = _copy_bn(src.bn1, hidden)
            blk.depthwise.weight.data.copy_(src.kernel(k)[:hidden])
            blk.bn2 = _copy_bn(src.bn2, hidden)
            blk.project.weight.data.copy_(src.project.weight.data[:, :hidden])
            blk.bn3 = _copy_bn(src.bn3, src.out_ch)
            blocks.append(blk)
    head = nn.Linear(supernet.head.in_features, supernet.head.out_features)
    head.load_state_dict(supernet.head.state_dict())
    sub = Subnet(arch.resolution, _StemBlock(stem, _copy_bn(supernet.stem_bn, supernet.stem_bn.num_features)), blocks, head)
    sub.train(supernet.training)
    return sub


def build_standalone(config: SupernetConfig, arch: ElasticArch) -> Subnet:
    """A freshly initialised standalone network of ``arch`` (for the train-from-scratch comparison)."""
    return extract_subnet(ElasticSupernet(config), arch)
