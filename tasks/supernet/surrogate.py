"""Online surrogate models fitted on the architectures evaluated so far.

``RidgeSurrogate`` fits a ridge regression per objective on the space's features (one-hot per gene plus one-hot per
interacting gene group); the ridge penalty of each objective is chosen by exact leave-one-out error over a grid, from
one eigendecomposition shared by all objectives. With the one-hot features alone this is the additive per-edge-op (per-block)
latency model fitted by least squares; the interaction groups add the correction for pairs of choices.

The leave-one-out RMSE of each objective is kept as its predictive spread (``rmse_``), which the search uses to
stay optimistic about unevaluated candidates.

``BoostedSurrogate`` fits gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor``) on the space's
``model_inputs`` (leading ``categorical`` columns categorical, the rest ordinal counts). Accuracy is far from
additive in the genes (a cell whose paths hold no convolution collapses; an edge off every input->output path is
inert), which trees capture and a ridge model cannot: on NAS-Bench-201 with 1,000 random cells for training,
held-out RMSE of CIFAR-10 accuracy among the top 10 % of cells is 0.50 pp for the trees on (op, op-if-alive) against
3.47 pp for the ridge with pairwise features; with ``NB201Space.model_inputs`` (alive ops, mirror cells merged, path
conv counts) it is 0.38 / 0.73 / 1.22 pp on CIFAR-10 / CIFAR-100 / ImageNet16 against 0.52 / 0.86 / 1.62 pp for
(op, op-if-alive) (3 draws each).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
# imported here, not lazily: its OpenMP runtime must be loaded before a search limits thread pools (threadpoolctl only
# limits libraries already loaded), or the first fit runs on every core
from sklearn.ensemble import HistGradientBoostingRegressor

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
    """Gradient-boosted regression trees on categorical inputs, one model per objective (deterministic for a seed)."""

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
        cat = np.arange(x.shape[1]) < n_cat
        self.models_ = [
            HistGradientBoostingRegressor(max_iter=self.max_iter, learning_rate=self.learning_rate,
                                          categorical_features=cat if cat.any() else None, early_stopping=False,
                                          random_state=self.seed).fit(x, y[:, j])
            for j in range(y.shape[1])
        ]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.models_:
            raise RuntimeError("BoostedSurrogate.predict before fit")
        x = np.asarray(x, dtype=np.int64)
        return np.stack([m.predict(x) for m in self.models_], axis=1)
