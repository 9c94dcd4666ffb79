"""Adapting the pre-trained prior to a new device from N measured architectures.

The new device's latency on the prior's modelling scale (``prior.to_scale``: ms ** 0.5 by default, log for power 0;
standardised over the N measurements) is a Gaussian process
``y(x) = b0 + b1 m(x) + f(x) + noise``: ``m`` the known devices' average (``prior.Basis.h``), ``b`` fixed effects
with a flat prior (restricted maximum likelihood integrates them out), ``f`` a sum of kernel blocks (known devices'
deviations, op counts, per-op one-hot, joint choices) with one scale each. The block scales and the noise are fitted
on the N measurements by restricted maximum likelihood, regularised toward the meta-learned prior (a Gaussian on the
log scale, ``DevicePrior.log_params`` / ``log_params_sd``): with 5 measurements the prior decides, with 50 the data.

Predictions carry their uncertainty: the posterior standard deviation of the log latency (model and measurement
noise), so a search can measure where the predictor is unsure. Everything a model needs is arrays (the prior's maps,
the measured genes and latencies, the fitted hyper-parameters), so it is stored in the catalog and rebuilt exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from forgeflow.tasks.latency.prior import BLOCKS, Basis, DevicePrior, from_scale, to_scale
from forgeflow.tasks.latency.table import LatencyInputError, Measurements

MIN_SAMPLES = 3  # two fixed effects plus one degree of freedom for the noise


def _grams(basis: Basis) -> list[np.ndarray | None]:
    return [None if b not in basis.blocks else basis.blocks[b] @ basis.blocks[b].T for b in BLOCKS]


def _kernel(log_params: np.ndarray, grams: list, n: int) -> np.ndarray:
    k = np.exp(2.0 * log_params[-1]) * np.eye(n)
    for lp, g in zip(log_params[:-1], grams):
        if g is not None:
            k = k + np.exp(2.0 * lp) * g
    return k


def _reml(log_params, grams, h, y, centre, spread) -> tuple[float, np.ndarray]:
    """Negative restricted log likelihood plus the prior, and its gradient in ``log_params``."""
    n = len(y)
    k = _kernel(log_params, grams, n)
    try:
        chol = cho_factor(k + 1e-10 * np.eye(n), lower=True)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(log_params)
    ki_h = cho_solve(chol, h)
    a = h.T @ ki_h
    sign, logdet_a = np.linalg.slogdet(a)
    if sign <= 0:
        return 1e10, np.zeros_like(log_params)
    k_inv = cho_solve(chol, np.eye(n))
    proj = k_inv - ki_h @ np.linalg.solve(a, ki_h.T)  # P: K^-1 with the fixed effects integrated out
    py = proj @ y
    z = (log_params - centre) / spread
    value = 0.5 * float(y @ py) + float(np.log(np.diag(chol[0])).sum()) + 0.5 * logdet_a + 0.5 * float(z @ z)
    grad = z / spread
    dks = [2.0 * np.exp(2.0 * lp) * g if g is not None else None for lp, g in zip(log_params[:-1], grams)]
    dks.append(2.0 * np.exp(2.0 * log_params[-1]) * np.eye(n))
    for j, dk in enumerate(dks):
        if dk is not None:
            grad[j] += 0.5 * float(np.sum(proj * dk)) - 0.5 * float(py @ dk @ py)
    return value, grad


def fit_hyperparameters(basis: Basis, y: np.ndarray, centre: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Log [block scales..., noise] maximising the restricted likelihood of ``y`` (standardised here) plus the prior."""
    y = np.asarray(y, dtype=np.float64)
    ys = (y - y.mean()) / max(float(y.std()), 1e-12)
    grams = _grams(basis)
    with threadpool_limits(limits=1):  # tiny matrices: BLAS threads only contend (and spin on a busy machine)
        res = minimize(_reml, np.asarray(centre, dtype=np.float64), args=(grams, basis.h, ys, centre, spread),
                       jac=True, method="L-BFGS-B", bounds=[(-9.0, 3.0)] * len(centre))
    return np.asarray(res.x)


@dataclass
class LatencyPrediction:
    """Predicted latency (ms, the posterior median) and its uncertainty (standard deviation of the log latency;
    ``lower``/``upper``: a 90 % interval in ms)."""

    latency_ms: np.ndarray
    log_std: np.ndarray

    @property
    def lower(self) -> np.ndarray:
        return self.latency_ms * np.exp(-1.645 * self.log_std)

    @property
    def upper(self) -> np.ndarray:
        return self.latency_ms * np.exp(1.645 * self.log_std)


class DeviceModel:
    """A device's latency model: the prior plus what N measurements taught about the device."""

    def __init__(self, prior: DevicePrior, genes: np.ndarray, latency_ms: np.ndarray, log_params: np.ndarray) -> None:
        self.prior = prior
        self.genes = np.asarray(genes, dtype=np.int64)
        self.latency_ms = np.asarray(latency_ms, dtype=np.float64)
        self.log_params = np.asarray(log_params, dtype=np.float64)
        y = to_scale(self.latency_ms, prior.power)
        self._y_mean, self._y_sd = float(y.mean()), max(float(y.std()), 1e-12)
        self._floor = 0.05 * float(y.min()) if prior.power != 0.0 else 0.0
        ys = (y - self._y_mean) / self._y_sd
        self._basis = prior.basis(self.genes)
        n = len(ys)
        k = _kernel(self.log_params, _grams(self._basis), n)
        self._chol = np.linalg.cholesky(k + 1e-10 * np.eye(n))
        h = self._basis.h
        self._ki_h = self._solve(h)
        ki_y = self._solve(ys)
        self._a_inv = np.linalg.inv(h.T @ self._ki_h)
        self.beta = self._a_inv @ (h.T @ ki_y)
        self._alpha = self._solve(ys - h @ self.beta)

    @property
    def n_measurements(self) -> int:
        return len(self.genes)

    @property
    def noise_log_std(self) -> float:
        """The fitted measurement noise, as a standard deviation of the log latency (at the measurements' mean, by
        the delta method, on a power scale)."""
        sd = float(np.exp(self.log_params[-1]) * self._y_sd)
        return sd if self.prior.power == 0.0 else sd / (self.prior.power * max(self._y_mean, 1e-12))

    def _solve(self, b: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self._chol.T, np.linalg.solve(self._chol, b))

    def predict(self, genes: np.ndarray, chunk: int = 4096) -> LatencyPrediction:
        genes = self.prior.space.validate(genes)
        means, sds = [], []
        for i in range(0, len(genes), chunk):
            m, s = self._predict(genes[i:i + chunk])
            means.append(m)
            sds.append(s)
        mean = np.concatenate(means) if means else np.zeros(0)
        sd = np.concatenate(sds) if sds else np.zeros(0)
        value = mean * self._y_sd + self._y_mean
        if self.prior.power == 0.0:
            return LatencyPrediction(np.exp(value), sd * self._y_sd)
        # a power scale: the log latency's standard deviation by the delta method, d log(ms) = dv / (power v)
        v = np.maximum(value, self._floor)
        return LatencyPrediction(from_scale(v, self.prior.power, self._floor), sd * self._y_sd / (self.prior.power * v))

    def _predict(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = self.prior.basis(genes)
        kx = np.zeros((len(genes), self.n_measurements))
        prior_var = np.full(len(genes), np.exp(2.0 * self.log_params[-1]))
        for lp, name in zip(self.log_params[:-1], BLOCKS):
            if name in b.blocks:
                scale = np.exp(2.0 * lp)
                kx += scale * (b.blocks[name] @ self._basis.blocks[name].T)
                prior_var += scale * np.einsum("ij,ij->i", b.blocks[name], b.blocks[name])
        mean = b.h @ self.beta + kx @ self._alpha
        ki_kx = self._solve(kx.T)  # (N, n)
        u = b.h - (self._ki_h.T @ kx.T).T  # (n, 2)
        var = prior_var - np.einsum("ij,ji->i", kx, ki_kx) + np.einsum("ij,jk,ik->i", u, self._a_inv, u)
        return mean, np.sqrt(np.maximum(var, 1e-12))

    def loo_log_rmse(self) -> float:
        """Leave-one-out RMSE of the log latency over the measurements (closed form, hyper-parameters fixed)."""
        n = self.n_measurements
        k_inv = self._solve(np.eye(n))
        # with fixed effects integrated out: the projected inverse P = K^-1 - K^-1 H A^-1 H^T K^-1
        p = k_inv - self._ki_h @ self._a_inv @ self._ki_h.T
        ys = (to_scale(self.latency_ms, self.prior.power) - self._y_mean) / self._y_sd
        loo = (p @ ys) / np.maximum(np.diag(p), 1e-12)  # measured minus leave-one-out prediction, standardised
        if self.prior.power == 0.0:
            return float(np.sqrt(np.mean(loo**2)) * self._y_sd)
        v = to_scale(self.latency_ms, self.prior.power)
        held = from_scale(v - loo * self._y_sd, self.prior.power, self._floor)
        return float(np.sqrt(np.mean(np.log(self.latency_ms / held) ** 2)))

    # -- storage ------------------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**self.prior.to_arrays(), "device.genes": self.genes, "device.latency_ms": self.latency_ms,
                "device.log_params": self.log_params}

    @classmethod
    def from_arrays(cls, space, devices: list[str], arrays: dict) -> "DeviceModel":
        prior = DevicePrior.from_arrays(space, devices, arrays)
        return cls(prior, arrays["device.genes"], arrays["device.latency_ms"], arrays["device.log_params"])


def adapt(prior: DevicePrior, measurements: Measurements) -> DeviceModel:
    """Fit a new device from its measurements (distinct architectures of the prior's space)."""
    n = len(measurements.genes)
    if n < MIN_SAMPLES:
        raise LatencyInputError(f"too few measurements: {n} distinct architectures, at least {MIN_SAMPLES} are needed")
    genes = prior.space.validate(measurements.genes)
    y = to_scale(measurements.latency_ms, prior.power)
    if float(y.std()) <= 1e-12:
        raise LatencyInputError("the measurements carry no information: every architecture has the same latency")
    log_params = fit_hyperparameters(prior.basis(genes), y, prior.log_params, prior.log_params_sd)
    return DeviceModel(prior, genes, measurements.latency_ms, log_params)
