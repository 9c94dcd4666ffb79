"""Small models suited to federated training (spec ``forgeflow.tasks.federated.models:<factory>``).

``digits_cnn_gn`` is the digits CNN with GroupNorm in place of BatchNorm. GroupNorm normalises each example on its
own, so (a) the model's whole state is trainable weights: no running statistics that FedAvg, sparsification and
error feedback would have to carry (stale BN variances summed through error feedback can turn negative and
produce NaNs), and (b) per-example gradients are well defined, as DP-SGD's per-example clipping requires. This is
the usual choice in federated and DP training (Hsieh et al. 2020, "The Non-IID Data Quagmire"; Opacus' model rules).

``digits_linear_ln`` is softmax regression on per-example standardised inputs (650 weights): the model for
record-level DP in the benchmark. Its normalisation uses each example's own pixels only (no data statistics, so no
privacy cost and nothing to average), and it conditions full-batch gradient descent far better than raw pixels in
[0, 1]; with ~7x fewer weights than the 64-hidden MLP the same noise multiplier adds ~2.7x less noise norm.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class DigitsCNNGroupNorm(nn.Module):
    """1x8x8 -> conv3x3(c) -> GN -> ReLU -> pool -> conv3x3(2c) -> GN -> ReLU -> pool -> linear(10); ~6.2k weights."""

    def __init__(self, channels: int = 16, num_classes: int = 10, groups: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.gn1 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.gn2 = nn.GroupNorm(groups, 2 * channels)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * channels * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.gn1(self.conv1(x))))
        x = self.pool(torch.relu(self.gn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


def digits_cnn_gn(channels: int = 16, num_classes: int = 10) -> nn.Module:
    return DigitsCNNGroupNorm(channels=channels, num_classes=num_classes)


def digits_cnn_gn_small(num_classes: int = 10) -> nn.Module:
    """The same CNN at 8 channels (1,946 weights, a third of the 16-channel one): for client-level DP, whose noise
    norm grows with the square root of the weight count, while the convolutions keep tolerating one-pixel shifts."""
    return DigitsCNNGroupNorm(channels=8, num_classes=num_classes)


class DigitsMLP(nn.Module):
    """64 -> hidden -> classes with ReLU. Few weights (hidden=16: 1,210): the Gaussian noise DP adds grows with the
    square root of the weight count, so DP training favours small models."""

    def __init__(self, hidden: int = 16, num_classes: int = 10, in_features: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class DigitsLinearLN(nn.Module):
    """flatten -> LayerNorm without affine (each example to zero mean, unit variance) -> linear(classes)."""

    def __init__(self, num_classes: int = 10, in_features: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(in_features, elementwise_affine=False)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(torch.flatten(x, 1)))


def digits_linear_ln(num_classes: int = 10) -> nn.Module:
    return DigitsLinearLN(num_classes=num_classes)
