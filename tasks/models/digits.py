"""scikit-learn's digits (bundled with the package, no download) and small models for it.

Images are 8x8 grey levels 0..16, returned as float32 tensors N x 1 x 8 x 8 scaled to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn


def load_digits_split(seed: int = 0, test_fraction: float = 0.25):
    """Stratified train/test split of the 1,797 digits as tensors: (x_train, y_train, x_test, y_test)."""
    from forgeflow.tasks.datasets import load_dataset

    return dataset_tensors(load_dataset(None, seed=seed, test_fraction=test_fraction))


def dataset_tensors(data):
    """A ``tasks.datasets.Dataset`` as torch tensors: (x_train, y_train, x_test, y_test)."""
    t = torch.from_numpy
    return t(data.x_train), t(data.y_train), t(data.x_test), t(data.y_test)


class DigitsCNN(nn.Module):
    """Two 3x3 conv blocks and a linear head: ~10k parameters, ~98 % test accuracy on digits."""

    def __init__(self, channels: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * channels * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))  # 8x8 -> 4x4
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))  # 4x4 -> 2x2
        return self.fc(torch.flatten(x, 1))


class DigitsMLP(nn.Module):
    """64 -> hidden -> 10 MLP (no batch norm, so per-example gradients stay simple)."""

    def __init__(self, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class DigitsDeepMLP(nn.Module):
    """64 -> widths[0] -> widths[1] -> ... -> 10 ReLU MLP (the verification benchmark's 64-32-32-10 and 64-64-64-10)."""

    def __init__(self, widths: tuple[int, ...] = (32, 32), num_classes: int = 10):
        super().__init__()
        dims = (64, *widths)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.out(x)


def digits_mlp_32_32() -> DigitsDeepMLP:
    return DigitsDeepMLP((32, 32))


def digits_mlp_64_64() -> DigitsDeepMLP:
    return DigitsDeepMLP((64, 64))


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 30, lr: float = 1e-2,
                     batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Adam with cross-entropy over shuffled mini-batches; deterministic for a given seed."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def count_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> int:
    """How many of ``x`` the model (put in eval mode) labels as ``y``, top-1, in batches of ``batch_size``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1]."""
    return count_correct(model, x, y, batch_size) / max(len(x), 1)
