"""Online surrogate models fitted on the architectures evaluated so far.

``RidgeSurrogate`` fits a ridge regression per objective on the space's features (one-hot per gene plus one-hot per
interacting gene group); the ridge penalty of each objective is chosen by exact leave-one-out error over a grid, from
one eigendecomposition shared by all objectives. With the one-hot features alone this is the additive per-edge-op (per-block)
latency model fitted by least squares; the interaction groups add the correction for pairs of choices.

The leave-one-out RMSE of each objective is kept as its predictive spread (``rmse_``), which the search uses to
stay optimistic about unevaluated candidates.

``BoostedSurrogate`` fits gradient-boosted trees (LightGBM) on the space's ``model_inputs`` (leading ``categorical``
columns categorical, the rest ordinal counts). Accuracy is far from additive in the genes (a cell whose paths hold no
convolution collapses; an edge off every input->output path is inert), which trees capture and a ridge model cannot:
on NAS-Bench-201 with 1,000 random cells for training, held-out RMSE of CIFAR-10 accuracy among the top 10 % of
cells is 0.50 pp for trees on (op, op-if-alive) against 3.47 pp for the ridge with pairwise features. With
``NB201Space.model_inputs`` (each cell's expression-class representative: alive ops, skip chains collapsed, mirror
cells merged, path conv counts) it is 0.34 / 0.69 / 1.10 pp on CIFAR-10 / CIFAR-100 / ImageNet16 (0.35 / 0.66 /
1.20 pp for the same inputs without the class merge; 3 draws each). Random draws hide what the merge is for: on the
cells a search has evaluated, it pools the few measured members of a high-accuracy class, so an unevaluated member
reached through a skip chain is ranked with them (in 30 searches, the best cells under a limit that the search had
missed ranked 1-9 among the unevaluated cells under the limit on ImageNet16, against 284-1,084 without the merge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
# imported here, not lazily: its OpenMP runtime must be loaded before a search limits thread pools (threadpoolctl only
# limits libraries already loaded); the models also ask for one thread themselves
from lightgbm import LGBMRegressor

DEFAULT_PENALTIES = tuple(float(v) for v in np.logspace(-3, 3, 13))


@dataclass
class RidgeSurrogate:
    penalties: tuple[float, ...] = DEFAULT_PENALTIES
    coef_: np.ndarray | None = field(default=None, repr=False)
    intercept_: np.ndarray | None = field(default=None, repr=False)
    mean_x_: np.ndarray | None = field(default=None, repr=False)
    penalty_: np.ndarray | None = None
    rmse_: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> "RidgeSurrogate":
        """Fit ``y`` (n, k) on features ``x`` (n, d); returns self."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        n = len(x)
        if n < 2:
            raise ValueError("a surrogate needs at least 2 observations")
        self.mean_x_ = x.mean(axis=0)
        mean_y = y.mean(axis=0)
        xc = x - self.mean_x_
        yc = y - mean_y
        # One eigendecomposition of the smaller Gram matrix serves every penalty and objective.
        primal = xc.shape[1] <= n
        gram = xc.T @ xc if primal else xc @ xc.T
        evals, evecs = np.linalg.eigh(gram)
        evals = np.maximum(evals, 0.0)
        if primal:
            z = xc @ evecs  # (n, d): data in the eigenbasis
            zty = z.T @ yc
        else:
            uty = evecs.T @ yc
        best_err = np.full(y.shape[1], np.inf)
        best_pen = np.zeros(y.shape[1])
        for lam in self.penalties:
            if primal:
                fitted = z @ (zty / (evals + lam)[:, None])
                hat = np.einsum("ij,j,ij->i", z, 1.0 / (evals + lam), z)
            else:
                shrink = evals / (evals + lam)
                fitted = evecs @ (shrink[:, None] * uty)
                hat = np.einsum("ij,j,ij->i", evecs, shrink, evecs)
            hat = hat + 1.0 / n  # the intercept's leverage
            loo = (yc - fitted) / np.maximum(1.0 - hat, 1e-6)[:, None]
            err = np.sqrt(np.mean(loo**2, axis=0))
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_pen = np.where(better, lam, best_pen)
        coef = np.empty((x.shape[1], y.shape[1]))
        for j, lam in enumerate(best_pen):
            if primal:
                coef[:, j] = evecs @ (zty[:, j] / (evals + lam))
            else:
                coef[:, j] = xc.T @ (evecs @ (uty[:, j] / (evals + lam)))
        self.coef_ = coef
        self.intercept_ = mean_y
        self.penalty_ = best_pen
        self.rmse_ = best_err
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("RidgeSurrogate.predict before fit")
        x = np.asarray(x)
        coef = self.coef_.astype(x.dtype) if x.dtype == np.float32 else self.coef_
        return x @ coef + (self.intercept_ - self.mean_x_ @ self.coef_)


@dataclass
class BoostedSurrogate:
    """Gradient-boosted regression trees (LightGBM) on categorical inputs, one model per objective, single-threaded
    and deterministic for a seed.

    LightGBM rather than scikit-learn's ``HistGradientBoostingRegressor``: the same leaf-wise histogram boosting
    (31 leaves, 20 samples a leaf, learning rate 0.1), but a search refits these trees ~25 times on <= 1,000 rows,
    where scikit-learn's per-iteration Python overhead dominates (0.31 s against 0.07 s a 150-tree fit here, with
    the same held-out error on NAS-Bench-201). Categorical splits group categories by gradient statistics; with
    5-way categories and a few hundred rows the library's smoothing defaults (100 rows a group) would forbid most of
    them, so they are relaxed."""

    max_iter: int = 150
    learning_rate: float = 0.1
    seed: int = 0
    categorical: int | None = None  # leading columns that are categorical (None: all); the rest are ordinal
    models_: list = field(default_factory=list, repr=False)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "BoostedSurrogate":
        x = np.asarray(x, dtype=np.int64)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if len(x) < 2:
            raise ValueError("a surrogate needs at least 2 observations")
        if x.size and (x.min() < 0 or x.max() >= 255):
            raise ValueError("categorical inputs must lie in 0..254")
        n_cat = x.shape[1] if self.categorical is None else min(self.categorical, x.shape[1])
        xf = x.astype(np.float64)
        self.models_ = [
            LGBMRegressor(n_estimators=self.max_iter, learning_rate=self.learning_rate, num_leaves=31,
                          min_child_samples=20, min_data_per_group=5, cat_smooth=1.0, cat_l2=1.0, n_jobs=1,
                          deterministic=True, force_row_wise=True, random_state=self.seed, verbose=-1)
            .fit(xf, y[:, j], categorical_feature=list(range(n_cat)))
            for j in range(y.shape[1])
        ]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.models_:
            raise RuntimeError("BoostedSurrogate.predict before fit")
        xf = np.asarray(x, dtype=np.float64)
        return np.stack([m.predict(xf) for m in self.models_], axis=1)
