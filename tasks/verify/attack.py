"""PGD on the fake-quant (or float) torch model, every candidate replayed on the exact executor.

The attack moves a real input inside the box's real image ``[(lo - z0) s0, (hi - z0) s0]`` by signed gradient steps
on the CW margin ``max_{j != c} y_j - y_c`` (torch's fake quantization passes gradients straight through rounding),
from the centre and from random starts. Every iterate is snapped to the input lattice (round half to even, clipped to
the box) and replayed on ``QNetwork.predict``; only a lattice point the exact executor misclassifies is returned.
"""

from __future__ import annotations

import numpy as np

from forgeflow.tasks.verify.intnet import QNetwork


def pgd_attack(model, net: QNetwork, lo: np.ndarray, hi: np.ndarray, label: int, center: np.ndarray,
               steps: int = 20, restarts: int = 4, seed: int = 0) -> np.ndarray | None:
    """Input codes in ``[lo, hi]`` that ``net`` misclassifies, or None."""
    import torch

    s0, z0 = float(net.input_scale), int(net.input_zero_point)
    shape = (-1, *net.input_shape)
    lo_t = torch.tensor((lo - z0) * s0, dtype=torch.float32)
    hi_t = torch.tensor((hi - z0) * s0, dtype=torch.float32)
    if bool((lo_t == hi_t).all()):
        return None
    gen = torch.Generator().manual_seed(seed)
    starts = [torch.tensor((np.asarray(center) - z0) * s0, dtype=torch.float32)]
    for _ in range(max(restarts - 1, 0)):
        starts.append(lo_t + (hi_t - lo_t) * torch.rand(lo_t.shape, generator=gen))
    x = torch.stack(starts)
    alpha = float((hi_t - lo_t).max()) / 4.0
    model = model.eval()
    lo_i, hi_i = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    for step in range(steps + 1):
        x = x.detach().requires_grad_(True)
        y = model(x.reshape(shape))
        other = y.clone()
        other[:, label] = -torch.inf
        loss = (other.max(dim=1).values - y[:, label]).sum()
        codes = np.clip(np.rint(x.detach().numpy() / s0) + z0, lo_i, hi_i).astype(np.int64)
        flipped = np.flatnonzero(~net.keeps_label(codes, label))
        if len(flipped):
            return codes[flipped[0]]
        if step == steps:
            break
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x + alpha * torch.sign(grad), lo_t), hi_t)
            if step == steps // 2:
                alpha /= 2.0
    return None
