"""Train the elastic supernet once (sandwich rule + in-place distillation), recalibrate BN, train baselines.

Each step (BigNAS / once-for-all):
* the LARGEST subnet is trained on the labels;
* the SMALLEST and ``random_subnets`` random subnets are trained to match the largest's soft predictions of the same
  batch (in-place distillation: the teacher is the supernet itself, detached, no separate model);
* gradients of all of them are accumulated before one optimiser step.

Batch-norm statistics accumulated while training belong to the mixture of subnets, so before a subnet is measured its
BN running statistics are recomputed on training data (``recalibrate_bn``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from forgeflow.tasks import datasets
from forgeflow.tasks.datasets import DatasetError
from forgeflow.tasks.models.digits import count_correct
from forgeflow.tasks.supernet.space import ElasticArch, ElasticSpace
from forgeflow.tasks.supernet.supernet import ElasticSupernet, SupernetConfig, build_standalone, extract_subnet


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    random_subnets: int = 2
    temperature: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class TrainReport:
    epochs: int
    steps: int
    seconds: float
    loss_largest: tuple[float, ...]  # mean cross-entropy of the largest subnet per epoch
    loss_distill: tuple[float, ...]  # mean distillation loss of the other subnets per epoch
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    x_train: torch.Tensor  # N x C x H x W float32
    y_train: torch.Tensor  # N int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def side(self) -> int:
        return int(self.x_train.shape[-1])


def load_dataset(path: str | None = None, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """A data set from ``tasks.datasets.load_dataset`` (digits, .npz or Parquet) as square images N x C x H x W: rows
    of D features become one-channel sqrt(D) x sqrt(D) images (row-major), N x H x W arrays gain a channel."""
    loaded = datasets.load_dataset(path, seed=seed, test_fraction=test_fraction, min_rows=8)
    parts = [_as_images(path, x) for x in (loaded.x_train, loaded.x_test)]
    if parts[0].shape[1:] != parts[1].shape[1:]:
        raise DatasetError(f"dataset {path}: train and test images differ in shape")
    t = torch.from_numpy
    return Dataset(t(parts[0]), t(loaded.y_train), t(parts[1]), t(loaded.y_test), loaded.name)


def _as_images(path, x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise DatasetError(f"dataset {path}: {x.shape[1]} features per row is not a square image")
        x = x.reshape(len(x), 1, side, side)
    elif x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[2] != x.shape[3]:
        raise DatasetError(f"dataset {path}: x must be N x C x H x W with H == W, got {x.shape}")
    return np.ascontiguousarray(x)


def supernet_config_for(data: Dataset, space: ElasticSpace | None = None, **kwargs) -> SupernetConfig:
    if space is None:
        side = data.side
        res = tuple(sorted({max(4, side), max(4, int(round(side * 1.5))), 2 * side}))
        space = ElasticSpace(resolutions=res)
    return SupernetConfig(in_channels=data.in_channels, num_classes=data.num_classes, space=space, **kwargs)


def train_supernet(net: ElasticSupernet, data: Dataset, config: TrainConfig = TrainConfig()) -> TrainReport:
    space = net.config.space
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = (len(data.x_train) + config.batch_size - 1) // config.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs * steps_per_epoch))
    largest, smallest = space.largest(), space.smallest()
    start = time.perf_counter()
    ce_hist, kd_hist = [], []
    steps = 0
    net.train()
    for _ in range(config.epochs):
        perm = torch.randperm(len(data.x_train), generator=gen)
        ce_sum = kd_sum = 0.0
        for i in range(0, len(perm), config.batch_size):
            idx = perm[i : i + config.batch_size]
            if len(idx) < 2:  # batch norm needs more than one example
                continue
            x, y = data.x_train[idx], data.y_train[idx]
            opt.zero_grad(set_to_none=True)
            net.set_active(largest)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            ce_sum += loss.item()
            soft = F.softmax(logits.detach() / config.temperature, dim=1)
            students = [smallest] + [space.decode(g) for g in space.sample(rng, config.random_subnets)]
            for arch in students:
                net.set_active(arch)
                out = F.log_softmax(net(x) / config.temperature, dim=1)
                kd = F.kl_div(out, soft, reduction="batchmean") * config.temperature**2
                kd.backward()
                kd_sum += kd.item() / len(students)
            opt.step()
            sched.step()
            steps += 1
        ce_hist.append(ce_sum / steps_per_epoch)
        kd_hist.append(kd_sum / steps_per_epoch)
    net.set_active(largest)
    net.eval()
    return TrainReport(config.epochs, steps, time.perf_counter() - start, tuple(ce_hist), tuple(kd_hist),
                       {"random_subnets": config.random_subnets})


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 256, max_examples: int = 1024) -> nn.Module:
    """Recompute every BatchNorm's running mean/variance as the exact average over ``x`` (first ``max_examples``)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: equal weight per batch
    was_training = model.training
    model.train()
    x = x[:max_examples]
    for i in range(0, len(x), batch_size):
        if len(x[i : i + batch_size]) > 1:
            model(x[i : i + batch_size])
    for bn, m in zip(bns, saved):
        bn.momentum = m
    model.train(was_training)
    model.eval()
    return model


def accuracy_pct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * count_correct(model, x, y, batch_size) / max(len(x), 1)


def subnet_accuracy(net: ElasticSupernet, arch: ElasticArch, data: Dataset) -> float:
    """Test accuracy (%) of ``arch`` extracted from the supernet, after BN recalibration on training data."""
    sub = extract_subnet(net, arch)
    recalibrate_bn(sub, data.x_train)
    return accuracy_pct(sub, data.x_test, data.y_test)


def train_from_scratch(config: SupernetConfig, arch: ElasticArch, data: Dataset, train: TrainConfig) -> float:
    """Test accuracy (%) of ``arch`` trained alone from a fresh initialisation with the same optimiser and epochs."""
    torch.manual_seed(train.seed)
    model = build_standalone(config, arch)
    gen = torch.Generator().manual_seed(train.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    steps_per_epoch = (len(data.x_train) + train.batch_size - 1) // train.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, train.epochs * steps_per_epoch))
    model.train()
    for _ in range(train.epochs):
        perm = torch.randperm(len(data.x_train), generator=gen)
        for i in range(0, len(perm), train.batch_size):
            idx = perm[i : i + train.batch_size]
            if len(idx) < 2:
                continue
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
            sched.step()
    return accuracy_pct(model, data.x_test, data.y_test)


def state_arrays(net: ElasticSupernet) -> dict[str, np.ndarray]:
    """The supernet's weights and BN buffers as numpy arrays (for ``Catalog.put_arrays``)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def load_state_arrays(net: ElasticSupernet, arrays: dict[str, np.ndarray]) -> ElasticSupernet:
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    return net
