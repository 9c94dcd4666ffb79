"""Per-layer sensitivities for the planner, with or without data.

With data (a model that ships a dataset, such as ``forgeflow:digits_cnn`` on scikit-learn's digits, or a user's
``.npz``): the model is trained and HAWQ's Hutchinson traces are taken on real batches, as ``forgeflow quantize``
does. Without data (every torchvision architecture, a user's own factory): ZeroQ's distilled data -- Gaussian
inputs optimised so that the statistics they produce at every BatchNorm layer match its running mean and variance
(Cai et al., ZeroQ, CVPR 2020) -- labelled by the model's own predictions, and Hutchinson traces on those. A model
without BatchNorm gets plain Gaussian inputs (nothing to fit). Every result names the source it used.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from forgeflow.tasks.quantize.sensitivity import layer_sensitivities

SOURCE_DATA = "hutchinson on data"
SOURCE_ZEROQ = "hutchinson on ZeroQ synthetic inputs (fitted to BatchNorm statistics, labelled by the model)"
SOURCE_GAUSSIAN = "hutchinson on Gaussian synthetic inputs (no BatchNorm to fit), labelled by the model"


def distilled_inputs(model: nn.Module, input_shape: Sequence[int], batch_size: int = 32, steps: int = 200,
                     lr: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, str]:
    """ZeroQ distillation: inputs whose per-channel batch statistics at every BatchNorm layer match the layer's
    running statistics. Returns (inputs, source)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size,) + tuple(int(d) for d in input_shape[1:])
    x = torch.randn(shape, generator=gen)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]
    if not bns:
        return x, SOURCE_GAUSSIAN
    was = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: captured.append(inp[0])) for m in bns]
    x.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    params = [p for p in model.parameters()]
    req = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            captured.clear()
            opt.zero_grad()
            model(x)
            loss = x.new_zeros(())
            for bn, inp in zip(bns, captured):
                dims = [0] + list(range(2, inp.dim()))
                mean = inp.mean(dim=dims)
                std = torch.sqrt(inp.var(dim=dims, unbiased=False) + bn.eps)
                loss = loss + torch.norm(mean - bn.running_mean) + torch.norm(std - torch.sqrt(bn.running_var + bn.eps))
            loss.backward()
            opt.step()
    finally:
        for h in hooks:
            h.remove()
        for p, r in zip(params, req):
            p.requires_grad_(r)
        model.train(was)
    return x.detach(), SOURCE_ZEROQ


def self_labelled(model: nn.Module, x: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    with torch.no_grad():
        was = model.training
        model.eval()
        y = model(x).argmax(dim=1)
        model.train(was)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def sensitivities_for(model: nn.Module, input_shape: Sequence[int], *, batches=None, bits=(8, 4),
                      samples: int = 64, seed: int = 0, distill_steps: int = 200, batch_size: int = 32
                      ) -> tuple[dict[str, dict[int, float]], str]:
    """Layer FQN -> {bits: Hessian-weighted perturbation} and the source used (data if ``batches`` is given, else
    ZeroQ synthetic inputs)."""
    if batches is not None:
        source = SOURCE_DATA
    else:
        x, source = distilled_inputs(model, input_shape, batch_size=batch_size, steps=distill_steps, seed=seed)
        batches = self_labelled(model, x, max(1, batch_size // 2))
    sens = layer_sensitivities(model, batches, bits, max_samples=samples, min_samples=min(16, samples), seed=seed)
    return {s.name: {b: s.cost(b) for b in bits} for s in sens}, source
