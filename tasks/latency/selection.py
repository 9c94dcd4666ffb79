"""Which architectures to measure on a new device (active selection from the prior, before any measurement).

Greedy maximum posterior variance under the meta-learned prior (a pivoted Cholesky factorisation of the prior
kernel, fixed effects included): each pick is the architecture the prior is least sure about given the picks before
it. It spreads the N measurements along the directions in which devices differ (the known devices' deviations, op
counts, per-op costs) instead of leaving them to chance. The candidates are a seeded random pool, so seeds differ.
"""

from __future__ import annotations

import numpy as np

from forgeflow.tasks.latency.prior import BLOCKS, DevicePrior

POOL = 3000


def select_measurements(prior: DevicePrior, candidates: np.ndarray, n: int, *, seed: int = 0,
                        pool: int = POOL) -> np.ndarray:
    """Rows of ``candidates`` (distinct genes) to measure, in pick order (``n`` of them, fewer if there are fewer)."""
    rng = np.random.default_rng(seed)
    candidates = prior.space.validate(candidates)
    idx = rng.permutation(len(candidates))[: max(pool, n)]
    basis = prior.basis(candidates[idx])
    # weight-space features of the prior kernel: fixed effects with unit prior variance, then the scaled blocks
    parts = [basis.h]
    for lp, name in zip(prior.log_params[:-1], BLOCKS):
        if name in basis.blocks:
            parts.append(np.exp(lp) * basis.blocks[name])
    psi = np.concatenate(parts, axis=1)
    noise = float(np.exp(2.0 * prior.log_params[-1]))
    diag = np.einsum("ij,ij->i", psi, psi) + noise
    k = min(n, len(idx))
    chol = np.zeros((len(idx), k))
    chosen: list[int] = []
    free = np.ones(len(idx), dtype=bool)
    for step in range(k):
        i = int(np.flatnonzero(free)[np.argmax(diag[free])])
        chosen.append(i)
        free[i] = False
        col = psi @ psi[i] - chol[:, :step] @ chol[i, :step]
        col[i] += noise
        col /= np.sqrt(max(diag[i], 1e-12))
        chol[:, step] = col
        diag = diag - col**2
    return idx[np.asarray(chosen, dtype=np.int64)]
