"""Baselines a few-shot latency predictor must beat, fitted from the same N measurements.

* ``ridge_baseline``: ridge regression of the new device's log latency on the known devices' log latencies (the
  table's columns), penalty by exact leave-one-out error; defined only on architectures in the table.
* ``flops_baseline``: latency ranked by multiply-accumulates (``macs``) fitted as ``a + b * MACs`` (its Spearman is
  that of MACs alone): what a hardware-agnostic search assumes.
"""

from __future__ import annotations

import numpy as np

from forgeflow.tasks.latency.table import LatencyTable
from forgeflow.tasks.supernet.space import NB201_OPS, CategoricalSpace, NB201Space
from forgeflow.tasks.supernet.surrogate import RidgeSurrogate


def ridge_baseline(table: LatencyTable, device: str | None, rows: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    """Predicted latency (ms) of every table row from the measured ``rows`` (``device`` excluded from the inputs)."""
    known = [d for d in table.devices if d != device]
    x = np.log(np.stack([table.latency[d] for d in known], axis=1))
    model = RidgeSurrogate().fit(x[rows], np.log(np.asarray(latency_ms))[:, None])
    return np.exp(model.predict(x)[:, 0])


def macs(space: CategoricalSpace, genes: np.ndarray) -> np.ndarray:
    """Multiply-accumulates of each architecture, up to a constant shared by all members (a ranking proxy).

    NAS-Bench-201: every cell edge sees C channels at H x W, and C^2 H W is the same in all three stages (16 ch at
    32x32, 32 at 16x16, 64 at 8x8), so a cell's MACs are 15 cells x (9 per 3x3 conv + 1 per 1x1 conv) x C^2 H W plus
    pooling (9 C H W per avg_pool, negligible but counted). Elastic genes: sum over active blocks of expand ratio x
    (2 + kernel^2 / C) at the input resolution squared (1x1 expand and project, depthwise k x k)."""
    g = np.asarray(genes, dtype=np.int64)
    if isinstance(space, NB201Space):
        c2hw = 16 * 16 * 32 * 32
        chw = 16 * 32 * 32
        per = {NB201_OPS.index("nor_conv_3x3"): 9 * c2hw, NB201_OPS.index("nor_conv_1x1"): c2hw,
               NB201_OPS.index("avg_pool_3x3"): 9 * chw}
        cost = np.zeros(len(g))
        for op, v in per.items():
            cost += v * (g == op).sum(axis=1)
        return 15.0 * cost
    from forgeflow.tasks.supernet.space import ElasticSpace

    if isinstance(space, ElasticSpace):
        out = np.zeros(len(g))
        for i, row in enumerate(g):
            arch = space.decode(row)
            out[i] = arch.resolution**2 * sum(e * (2 + k * k / 16.0) for _, _, e, k in arch.active_blocks())
        return out
    raise ValueError(f"no MAC count for space {space.name}")


def flops_baseline(space: CategoricalSpace, genes: np.ndarray, measured: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    """Latency (ms) of ``genes`` as a least-squares line in MACs through the measured architectures."""
    x_all = macs(space, genes)
    x = macs(space, measured)
    a = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(a, np.asarray(latency_ms, dtype=np.float64), rcond=None)
    if coef[1] <= 0:  # a line that makes bigger networks faster is no FLOPs model: rank by MACs alone
        coef = np.array([float(np.mean(latency_ms)), 1e-12])
    return coef[0] + coef[1] * x_all
