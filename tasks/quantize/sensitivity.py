"""Per-layer second-order sensitivity (HAWQ-V2/V3): Hutchinson's Hessian trace and the quantization perturbation.

For a layer with weights W (n parameters) the loss increase from quantizing it to b bits is modelled as
``Omega(b) = tr(H_WW) / n * ||Q_b(W) - W||^2``. The trace of each diagonal Hessian block comes from Hutchinson's
estimator with Rademacher vectors v over *all* quantizable weights at once: ``E[v_l^T (H v)_l] = tr(H_ll)``
because the cross terms ``v_l^T H_lm v_m`` (l != m) have mean zero. Each Hessian-vector product is one double
backward pass (autograd) on a calibration batch, in eval mode (BatchNorm uses its running statistics). Sampling
stops when every layer's standard error is below ``rel_tol`` of its mean trace magnitude (or at ``max_samples``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from forgeflow.tasks.quantize.errors import QuantizeError
from forgeflow.tasks.quantize.fakequant import weight_perturbation
from forgeflow.tasks.quantize.layers import quantizable_modules
from forgeflow.tasks.quantize.problem import FLOAT_BITS


@dataclass(frozen=True)
class LayerSensitivity:
    """Hutchinson estimate of one layer's Hessian trace (sum over its weights, and per parameter), its standard
    error, the number of Hessian-vector products behind it, and ||Q_b(W) - W||^2 per candidate width."""

    name: str
    trace: float
    trace_per_param: float
    trace_stderr: float
    samples: int
    perturbation: Mapping[int, float] = field(default_factory=dict)

    def cost(self, bits: int) -> float:
        """Omega(b) = max(trace / n, 0) * ||Q_b(W) - W||^2 (a negative estimated trace is treated as flat)."""
        return max(self.trace_per_param, 0.0) * self.perturbation[bits]


def hutchinson_traces(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                      max_samples: int = 200, min_samples: int = 16, rel_tol: float = 0.05,
                      probes_per_batch: int = 4, seed: int = 0) -> dict[str, tuple[float, float, int]]:
    """Layer FQN -> (trace estimate, standard error, samples) for every quantizable layer's weight."""
    modules = quantizable_modules(model)
    if not batches:
        raise QuantizeError("Hutchinson's estimator needs at least one calibration batch")
    names = list(modules)
    params = [modules[n].weight for n in names]
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    sums = [0.0] * len(names)
    sq = [0.0] * len(names)
    count = 0
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        b = 0
        while count < max_samples:
            x, y = batches[b % len(batches)]
            b += 1
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for _ in range(probes_per_batch):
                vs = [torch.randint(0, 2, p.shape, generator=gen).to(p.dtype).mul_(2).sub_(1) for p in params]
                hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
                for i, (v, h) in enumerate(zip(vs, hv)):
                    est = float((v * h).sum())
                    sums[i] += est
                    sq[i] += est * est
                count += 1
                if count >= max_samples:
                    break
            del grads, loss
            if count >= min_samples and all(_stderr(s, q, count) <= rel_tol * max(abs(s / count), 1e-12)
                                            for s, q in zip(sums, sq)):
                break
    finally:
        for p, r in zip(params, requires):
            p.requires_grad_(r)
        model.train(was_training)
    return {n: (sums[i] / count, _stderr(sums[i], sq[i], count), count) for i, n in enumerate(names)}


def _stderr(s: float, q: float, n: int) -> float:
    if n < 2:
        return math.inf
    var = max(q / n - (s / n) ** 2, 0.0) * n / (n - 1)
    return math.sqrt(var / n)


def layer_sensitivities(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                        bits: Iterable[int] = (2, 3, 4, 8), **hutchinson_kwargs) -> list[LayerSensitivity]:
    """Trace and perturbations for every quantizable layer, in module order (``bits`` plus 32 = float)."""
    widths = sorted({int(b) for b in bits} | {FLOAT_BITS})
    traces = hutchinson_traces(model, batches, **hutchinson_kwargs)
    out = []
    for name, m in quantizable_modules(model).items():
        tr, se, n = traces[name]
        out.append(LayerSensitivity(name=name, trace=tr, trace_per_param=tr / m.weight.numel(), trace_stderr=se,
                                    samples=n, perturbation={b: weight_perturbation(m.weight, b) for b in widths}))
    return out

