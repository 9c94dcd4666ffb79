"""Pre-training on the devices of a latency table: what latency on a device never seen before is likely to look like.

``pretrain(table)`` learns, from every device column of the table:

Latency is modelled on one scale throughout (``to_scale``: ms ** ``DEFAULT_POWER``, the square root; power 0 is log).

1. **The known devices as functions of the architecture.** Each device's latency (on that scale) is fitted by ridge regression on
   the space's encoding (``ArchEncoding.features``: per-op one-hot plus joint choices of interacting genes; the
   penalty is chosen by exact leave-one-out error), then standardised. A smoothed device is defined on every member
   of the space, measured or not, and carries less measurement noise than the column it came from.
2. **A device basis.** ``m(x)``, the mean standardised log latency over the known devices (the "average device"),
   and ``R(x)``, each known device's deviation from it. A new device's log latency is modelled as
   ``a + b m(x) + f(x)``, ``f`` a Gaussian process whose kernel is a sum of blocks: the known devices' deviations
   (a device embedding: a new device's latency is near a mix of devices seen before), op counts, per-op one-hot and
   joint choices (op-level costs that no known device shows).
3. **Meta-learned hyper-parameters.** For every known device in turn, the basis is rebuilt from the *other* devices
   and the kernel's block scales and noise are fitted (restricted maximum likelihood) on a few of its architectures;
   their median and spread become the prior the few-shot fit (``fewshot.adapt``) is regularised toward. So the prior
   says how much a new device has tended to follow the known ones, from the devices themselves, not from names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgeflow.tasks.latency.encoding import ArchEncoding
from forgeflow.tasks.latency.table import LatencyInputError, LatencyTable
from forgeflow.tasks.supernet.space import CategoricalSpace
from forgeflow.tasks.supernet.surrogate import RidgeSurrogate

#: kernel blocks, in parameter order (the noise scale comes last)
BLOCKS = ("devices", "counts", "ops", "pairs")
#: a weak default prior (log scale) when there are too few known devices to meta-learn one
DEFAULT_LOG_PARAMS = np.log([0.3, 0.1, 0.05, 0.02, 0.05])
META_SAMPLES = 40  # architectures per known device in the meta-learning fits
META_DRAWS = 2
#: the modelling scale, ms ** DEFAULT_POWER: the square root sits between log (multiplicative effects) and ms
#: (a sum of per-op costs: CPUs and phones run the cell's edges one after another, so their latency adds up in ms;
#: docs/benchmarks.md, section latency_fewshot, has the leave-one-device-out figures with it)
DEFAULT_POWER = 0.5


@dataclass
class Basis:
    """The prior's view of some architectures: fixed effects ``h`` (n, 2) = [1, m(x)] and kernel blocks (name ->
    (n, d) scaled so that a block scale of 1 gives unit prior variance on a typical architecture)."""

    h: np.ndarray
    blocks: dict[str, np.ndarray]

    def take(self, rows) -> "Basis":
        return Basis(self.h[rows], {k: v[rows] for k, v in self.blocks.items()})


@dataclass
class DevicePrior:
    """What pre-training learnt (arrays only, so it stores in the catalog and rebuilds exactly)."""

    space: CategoricalSpace
    devices: list[str]
    feature_mean: np.ndarray  # (d,) centring of ArchEncoding.features over the table
    device_coef: np.ndarray  # (d, K): centred features -> standardised log latency of each known device
    device_offset: np.ndarray  # (K,)
    counts_mean: np.ndarray | None  # (c,) centring of op counts
    log_params: np.ndarray  # (5,) meta-learned prior centre of log [block scales..., noise]
    log_params_sd: np.ndarray  # (5,) its spread
    meta: dict = field(default_factory=dict)
    #: the scale latency is modelled on: 0 log(ms), else ms ** power (``to_scale``)
    power: float = 0.0

    @property
    def encoding(self) -> ArchEncoding:
        return ArchEncoding(self.space)

    def standardised(self, genes: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """(n, K) smoothed standardised log latency of each known device."""
        x = self.encoding.features(genes) if features is None else features
        return (x - self.feature_mean) @ self.device_coef + self.device_offset

    def basis(self, genes: np.ndarray, drop: int | None = None) -> Basis:
        """The fixed effects and kernel blocks of ``genes`` (known device ``drop`` left out of the device basis)."""
        genes = self.space.validate(genes)
        x = self.encoding.features(genes)
        z = self.standardised(genes, x)
        return self._basis(genes, x, z, drop)

    def _basis(self, genes, x, z, drop=None) -> Basis:
        if drop is not None:
            z = np.delete(z, drop, axis=1)
        mean = z.mean(axis=1)
        blocks: dict[str, np.ndarray] = {}
        if z.shape[1] > 1:
            blocks["devices"] = (z - mean[:, None]) / np.sqrt(z.shape[1])
        n_ops = self.encoding.n_ops
        xc = x - self.feature_mean
        g = self.space.n_genes
        if self.counts_mean is not None:
            blocks["counts"] = (self.encoding.counts(genes) - self.counts_mean) / np.sqrt(g)
        blocks["ops"] = xc[:, :n_ops] / np.sqrt(g)
        if x.shape[1] > n_ops:
            blocks["pairs"] = xc[:, n_ops:] / np.sqrt(max(self.encoding.n_groups(), 1))
        return Basis(np.stack([np.ones(len(mean)), mean], axis=1), blocks)

    # -- storage ------------------------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"prior.feature_mean": self.feature_mean, "prior.device_coef": self.device_coef,
               "prior.device_offset": self.device_offset, "prior.log_params": self.log_params,
               "prior.log_params_sd": self.log_params_sd}
        if self.counts_mean is not None:
            out["prior.counts_mean"] = self.counts_mean
        if self.power != 0.0:
            out["prior.power"] = np.array([self.power])
        return out

    @classmethod
    def from_arrays(cls, space: CategoricalSpace, devices: list[str], arrays: dict) -> "DevicePrior":
        return cls(space, list(devices), np.asarray(arrays["prior.feature_mean"]),
                   np.asarray(arrays["prior.device_coef"]), np.asarray(arrays["prior.device_offset"]),
                   None if "prior.counts_mean" not in arrays else np.asarray(arrays["prior.counts_mean"]),
                   np.asarray(arrays["prior.log_params"]), np.asarray(arrays["prior.log_params_sd"]),
                   power=float(np.asarray(arrays["prior.power"]).ravel()[0]) if "prior.power" in arrays else 0.0)


def pretrain(table: LatencyTable, *, exclude: str | None = None, meta_learn: bool = True, seed: int = 0,
             power: float = DEFAULT_POWER) -> DevicePrior:
    """Pre-train on every device of ``table`` except ``exclude``."""
    t = table.without(exclude)
    devices = t.devices
    if len(devices) < 1:
        raise LatencyInputError("pre-training needs a latency table with at least one device other than the target")
    space = t.space
    enc = ArchEncoding(space)
    x = enc.features(t.genes)
    mean_x = x.mean(axis=0)
    y = to_scale(np.stack([t.latency[d] for d in devices], axis=1), power)
    ridge = RidgeSurrogate().fit(x - mean_x, y)
    fitted = (x - mean_x) @ ridge.coef_ + ridge.intercept_
    mu, sd = fitted.mean(axis=0), fitted.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    coef = ridge.coef_ / sd
    offset = (ridge.intercept_ - mu) / sd
    counts = enc.counts(t.genes)
    prior = DevicePrior(space, devices, mean_x, coef, offset, None if counts is None else counts.mean(axis=0),
                        DEFAULT_LOG_PARAMS.copy(), np.full(len(DEFAULT_LOG_PARAMS), 1.5), power=power)
    prior.meta = {"n_table": len(t.archs), "smoothing_r2": _r2(y, fitted).tolist()}
    if meta_learn and len(devices) >= 3:
        _meta_learn(prior, t, x, y, seed)
    return prior


def to_scale(latency_ms, power: float) -> np.ndarray:
    """Latency on the modelling scale: log(ms) for ``power`` 0, else ms ** power."""
    ms = np.asarray(latency_ms, dtype=np.float64)
    return np.log(ms) if power == 0.0 else ms**power


def from_scale(value, power: float, floor: float) -> np.ndarray:
    """Inverse of ``to_scale``; values at or below 0 (power scales) become ``floor`` (the scale's smallest
    meaningful value), so the prediction stays a positive latency."""
    v = np.asarray(value, dtype=np.float64)
    return np.exp(v) if power == 0.0 else np.maximum(v, floor) ** (1.0 / power)


def _r2(y: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    return 1.0 - ((y - fitted) ** 2).sum(axis=0) / np.maximum(((y - y.mean(axis=0)) ** 2).sum(axis=0), 1e-300)


def _meta_learn(prior: DevicePrior, t: LatencyTable, x: np.ndarray, y: np.ndarray, seed: int) -> None:
    """Fit the kernel's hyper-parameters on each known device with that device left out of the basis; the prior's
    centre is their median, its spread their standard deviation (at least 0.5 on the log scale)."""
    from forgeflow.tasks.latency.fewshot import fit_hyperparameters

    rng = np.random.default_rng(seed)
    z = prior.standardised(t.genes, x)
    fits = []
    for k in range(len(prior.devices)):
        for _ in range(META_DRAWS):
            rows = rng.choice(len(t.genes), size=min(META_SAMPLES, len(t.genes)), replace=False)
            basis = prior._basis(t.genes[rows], x[rows], z[rows], drop=k)
            fits.append(fit_hyperparameters(basis, y[rows, k], DEFAULT_LOG_PARAMS, np.full(5, 3.0)))
    fits = np.array(fits)
    prior.log_params = np.median(fits, axis=0)
    prior.log_params_sd = np.maximum(fits.std(axis=0), 0.5)
    prior.meta["meta_fits"] = len(fits)
