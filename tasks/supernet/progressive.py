"""Progressive shrinking (once-for-all, Cai et al. 2020) with knowledge distillation from the largest subnet.

The supernet is trained in phases, each opening one more elastic dimension while the ones before stay elastic:

1. ``full``    the largest network (every block at the largest depth, expand and kernel) on the labels, elastic
               input resolution from the start (as once-for-all does);
2. ``kernel``  kernel sizes elastic (the centre crop of the largest kernel);
3. ``depth``   depths elastic, first the two largest values, then all (deep blocks are trained before being
               skipped);
4. ``expand``  expand ratios elastic, first the two largest values, then all.

After phase 1 the largest network is frozen as the teacher (a copy): every later step trains ``subnets_per_step``
subnets (the phase's largest, its smallest and random ones: the sandwich rule) on
``cross-entropy + kd_ratio * KL(teacher || student)``, gradients accumulated, one optimiser step.
Each phase restarts a cosine schedule from a smaller learning rate, as once-for-all does. Training the phase's largest subnet at every step keeps
the top of the front at the teacher's accuracy; its smallest keeps the bottom trained.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from forgeflow.tasks.supernet.space import ElasticArch, ElasticSpace
from forgeflow.tasks.supernet.supernet import ElasticSupernet
from forgeflow.tasks.supernet.train import Dataset, TrainReport, recalibrate_bn


@dataclass(frozen=True)
class ShrinkPhase:
    name: str
    epochs: int
    lr: float
    kernels: tuple[int, ...] | None = None  # None: the largest only
    depths: tuple[int, ...] | None = None
    expands: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ShrinkSchedule:
    """The phases and their shared settings. ``default_for`` builds the once-for-all order for a space."""

    phases: tuple[ShrinkPhase, ...]
    batch_size: int = 64
    weight_decay: float = 1e-4
    subnets_per_step: int = 3
    kd_ratio: float = 1.0
    temperature: float = 1.0
    seed: int = 0
    detail: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    @classmethod
    def default_for(cls, space: ElasticSpace, scale: float = 1.0, **kw) -> "ShrinkSchedule":
        def ep(n: float) -> int:
            return max(1, int(round(n * scale)))

        ks, ds, es = sorted(space.kernel_sizes), sorted(space.depths), sorted(space.expand_ratios)
        phases = [ShrinkPhase("full", ep(16), 3e-3)]
        if len(ks) > 1:
            phases.append(ShrinkPhase("kernel", ep(6), 1.5e-3, kernels=tuple(ks)))
        if len(ds) > 1:
            if len(ds) > 2:
                phases.append(ShrinkPhase("depth-1", ep(4), 1e-3, kernels=tuple(ks), depths=tuple(ds[-2:])))
            phases.append(ShrinkPhase("depth-2", ep(6), 1e-3, kernels=tuple(ks), depths=tuple(ds)))
        if len(es) > 1:
            if len(es) > 2:
                phases.append(ShrinkPhase("expand-1", ep(4), 1e-3, kernels=tuple(ks), depths=tuple(ds),
                                          expands=tuple(es[-2:])))
            phases.append(ShrinkPhase("expand-2", ep(12), 1e-3, kernels=tuple(ks), depths=tuple(ds),
                                      expands=tuple(es)))
        return cls(tuple(phases), **kw)


def _sample(space: ElasticSpace, phase: ShrinkPhase, rng: np.random.Generator, smallest: bool = False,
            largest: bool = False) -> ElasticArch:
    ks = phase.kernels or (max(space.kernel_sizes),)
    ds = phase.depths or (max(space.depths),)
    es = phase.expands or (max(space.expand_ratios),)
    n, m = space.n_stages, space.max_depth

    def pick(values):
        if smallest or largest:
            return min(values) if smallest else max(values)
        return values[int(rng.integers(len(values)))]

    res = pick(space.resolutions)
    depth = tuple(pick(ds) for _ in range(n))
    expand = tuple(tuple(pick(es) if b < depth[s] else min(space.expand_ratios) for b in range(m)) for s in range(n))
    kernel = tuple(tuple(pick(ks) if b < depth[s] else min(space.kernel_sizes) for b in range(m)) for s in range(n))
    return ElasticArch(res, depth, expand, kernel)


def frozen_teacher(net: ElasticSupernet, data: Dataset) -> ElasticSupernet:
    """A frozen copy of ``net``'s largest subnet with BN statistics of that subnet alone: the distillation teacher."""
    net.set_active(net.config.space.largest())
    teacher = copy.deepcopy(net)
    recalibrate_bn(teacher, data.x_train)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _step(net: ElasticSupernet, teacher: ElasticSupernet | None, archs: list[ElasticArch], x, y, kd_ratio: float,
          temperature: float) -> tuple[float, float]:
    """Accumulate the gradients of ``archs`` on one batch (CE, plus KD from ``teacher``); mean (ce, kd)."""
    soft = None
    if teacher is not None:
        with torch.no_grad():
            soft = F.softmax(teacher(x) / temperature, dim=1)
    ce_sum = kd_sum = 0.0
    for arch in archs:
        net.set_active(arch)
        logits = net(x)
        ce = F.cross_entropy(logits, y)
        loss = ce
        if soft is not None:
            kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean") * temperature**2
            loss = ce + kd_ratio * kd
            kd_sum += kd.item() / len(archs)
        (loss / len(archs)).backward()
        ce_sum += ce.item() / len(archs)
    return ce_sum, kd_sum


@dataclass(frozen=True)
class FinalPhase:
    """The final, all-elastic phase run longer than ``default_for``'s: ``epochs`` in total on one cosine schedule
    from ``lr``, resumable between pieces (``train_final_phase`` keeps the optimiser, the teacher and the epoch in a
    state file). Every step trains the largest, the smallest and ``subnets_per_step - 2`` random subnets."""

    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    subnets_per_step: int = 4
    kd_ratio: float = 1.0
    temperature: float = 1.0
    seed: int = 0


def train_final_phase(net: ElasticSupernet, data: Dataset, phase: FinalPhase, state_path, max_epochs: int | None = None,
                      log=None) -> dict:
    """Continue a progressively shrunk supernet ``net`` through ``phase``, at most ``max_epochs`` epochs in this call.

    ``state_path`` (torch file) holds the supernet, the teacher (frozen at the first call from ``net``'s largest
    subnet), the optimiser state and the epochs done: a later call resumes there (``net``'s weights are replaced by
    the saved ones). Returns {"done": epochs done, "epochs": total, "finished": bool, "ce": [...], "kd": [...]}."""
    from pathlib import Path

    space = net.config.space
    state_path = Path(state_path)
    opt = torch.optim.AdamW(net.parameters(), lr=phase.lr, weight_decay=phase.weight_decay)
    if state_path.exists():
        st = torch.load(state_path, weights_only=True)
        net.load_state_dict(st["net"])
        teacher = copy.deepcopy(net)
        teacher.load_state_dict(st["teacher"])
        teacher.set_active(space.largest())
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        opt.load_state_dict(st["opt"])
        done, ce_hist, kd_hist = int(st["done"]), list(st["ce"]), list(st["kd"])
    else:
        teacher = frozen_teacher(net, data)
        done, ce_hist, kd_hist = 0, [], []
    n = len(data.x_train)
    spe = (n + phase.batch_size - 1) // phase.batch_size
    total_steps = max(1, phase.epochs * spe)
    stop = phase.epochs if max_epochs is None else min(phase.epochs, done + max_epochs)
    start = time.perf_counter()
    for epoch in range(done, stop):
        net.train()
        rng = np.random.default_rng([phase.seed, epoch])
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(phase.seed * 100_003 + epoch))
        ce_sum = kd_sum = 0.0
        count = 0
        for j, i in enumerate(range(0, n, phase.batch_size)):
            idx = perm[i : i + phase.batch_size]
            if len(idx) < 2:
                continue
            for g in opt.param_groups:  # one cosine schedule over every piece
                g["lr"] = float(phase.lr * 0.5 * (1 + np.cos(np.pi * (epoch * spe + j) / total_steps)))
            opt.zero_grad(set_to_none=True)
            archs = [space.largest(), space.smallest()] + [space.decode(g) for g in
                                                           space.sample(rng, max(0, phase.subnets_per_step - 2))]
            ce, kd = _step(net, teacher, archs, data.x_train[idx], data.y_train[idx], phase.kd_ratio,
                           phase.temperature)
            opt.step()
            ce_sum, kd_sum, count = ce_sum + ce, kd_sum + kd, count + 1
        ce_hist.append(ce_sum / max(count, 1))
        kd_hist.append(kd_sum / max(count, 1))
        done = epoch + 1
        if log is not None:
            log(f"final: epoch {done}/{phase.epochs} ce {ce_hist[-1]:.4f} kd {kd_hist[-1]:.4f} "
                f"({time.perf_counter() - start:.0f} s)")
        tmp = state_path.with_suffix(".tmp")
        torch.save({"net": net.state_dict(), "teacher": teacher.state_dict(), "opt": opt.state_dict(), "done": done,
                    "ce": ce_hist, "kd": kd_hist}, tmp)
        tmp.replace(state_path)
    net.set_active(space.largest())
    net.eval()
    return {"done": done, "epochs": phase.epochs, "finished": done >= phase.epochs, "ce": ce_hist, "kd": kd_hist}


def train_progressive(net: ElasticSupernet, data: Dataset, schedule: ShrinkSchedule, log=None) -> TrainReport:
    """Train ``net`` in place through ``schedule``; returns per-epoch losses (CE of the sampled subnets, KD)."""
    space = net.config.space
    torch.manual_seed(schedule.seed)
    rng = np.random.default_rng(schedule.seed)
    gen = torch.Generator().manual_seed(schedule.seed)
    largest = space.largest()
    teacher = None
    start = time.perf_counter()
    ce_hist, kd_hist, steps = [], [], 0
    n = len(data.x_train)
    for phase in schedule.phases:
        opt = torch.optim.AdamW(net.parameters(), lr=phase.lr, weight_decay=schedule.weight_decay)
        spe = (n + schedule.batch_size - 1) // schedule.batch_size
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, phase.epochs * spe))
        for _ in range(phase.epochs):
            net.train()
            perm = torch.randperm(n, generator=gen)
            ce_sum = kd_sum = 0.0
            count = 0
            for i in range(0, n, schedule.batch_size):
                idx = perm[i : i + schedule.batch_size]
                if len(idx) < 2:
                    continue
                x, y = data.x_train[idx], data.y_train[idx]
                opt.zero_grad(set_to_none=True)
                if teacher is None:  # phase "full": the largest network at a random resolution
                    archs = [_sample(space, phase, rng)]
                    soft = None
                else:
                    with torch.no_grad():
                        soft = F.softmax(teacher(x) / schedule.temperature, dim=1)
                    # the sandwich rule: the phase's largest and smallest subnets and random ones in between
                    archs = [_sample(space, phase, rng, largest=True), _sample(space, phase, rng, smallest=True)] + [
                        _sample(space, phase, rng) for _ in range(max(0, schedule.subnets_per_step - 2))]
                for arch in archs:
                    net.set_active(arch)
                    logits = net(x)
                    ce = F.cross_entropy(logits, y)
                    loss = ce
                    if soft is not None:
                        kd = F.kl_div(F.log_softmax(logits / schedule.temperature, dim=1), soft,
                                      reduction="batchmean") * schedule.temperature**2
                        loss = ce + schedule.kd_ratio * kd
                        kd_sum += kd.item() / len(archs)
                    (loss / len(archs)).backward()
                    ce_sum += ce.item() / len(archs)
                opt.step()
                sched.step()
                steps += 1
                count += 1
            ce_hist.append(ce_sum / max(count, 1))
            kd_hist.append(kd_sum / max(count, 1))
            if log is not None:
                log(f"{phase.name}: epoch ce {ce_hist[-1]:.4f} kd {kd_hist[-1]:.4f} ({time.perf_counter() - start:.0f} s)")
        if teacher is None:
            net.set_active(largest)
            teacher = copy.deepcopy(net)
            recalibrate_bn(teacher, data.x_train)  # statistics of the largest network alone, not the resolution mix
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
    net.set_active(largest)
    net.eval()
    return TrainReport(schedule.epochs, steps, time.perf_counter() - start, tuple(ce_hist), tuple(kd_hist),
                       {"method": "progressive_shrinking", "phases": [(p.name, p.epochs) for p in schedule.phases],
                        "subnets_per_step": schedule.subnets_per_step, "kd_ratio": schedule.kd_ratio})
