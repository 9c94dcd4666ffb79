"""Small models used by the profiling tests (importable by spec: ``tests.profiling._models:NAME``)."""

import torch
from torch import nn


class DataDependent(nn.Module):
    """Branches on a tensor value: neither torch.fx nor torch.export can capture it."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


class ShapeBranch(nn.Module):
    """Python control flow on a shape: torch.fx cannot trace it, torch.export can."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if x.shape[-1] == 8:
            return self.fc(x).relu()
        return x


class SharedLinear(nn.Module):
    """One Linear called twice: its parameters must be counted once."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.scale = nn.Parameter(torch.ones(16))

    def forward(self, x):
        y = self.fc(x)
        z = self.fc(y.relu()) * self.scale
        return z + y


def tiny_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def broken_factory():
    raise RuntimeError("weights file corrupted")


def data_dependent():
    return DataDependent()


def shape_branch():
    return ShapeBranch()


def shared_linear():
    return SharedLinear()


class AttentionBlock(nn.Module):
    """One self-attention layer (the shape of a ViT encoder's attention)."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def attention_block():
    return AttentionBlock()
