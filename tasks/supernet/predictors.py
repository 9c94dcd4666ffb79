"""Accuracy and latency predictors for subnets of the elastic supernet, and the objective source built on them.

* Accuracy: a scikit-learn ridge regression (penalty by cross-validation) on the architecture encoding (one-hot genes
  plus per-stage depth / mean expand / mean kernel and resolution), fitted on subnets sampled from the trained
  supernet and measured after BN recalibration.
* Latency: a per-block lookup table of measured CPU latency (every block shape the space can produce, at every input
  side it can see) plus stem/head per resolution; the sum is corrected by a least-squares line fitted on a few
  measured whole subnets (it absorbs framework overhead per call and cache effects the isolated blocks miss).

``PredictorReport`` carries Spearman rank correlation and RMSE on held-out subnets, the predictors' certificate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import spearmanr
from sklearn.linear_model import LinearRegression, RidgeCV

from forgeflow.tasks.supernet.space import ElasticArch, ElasticSpace
from forgeflow.tasks.supernet.supernet import ElasticSupernet, InvertedResidual, Subnet, _StemBlock, extract_subnet
from forgeflow.tasks.supernet.train import Dataset, subnet_accuracy


@dataclass(frozen=True)
class PredictorReport:
    name: str
    n_train: int
    n_test: int
    spearman: float
    rmse: float
    unit: str
    detail: dict = field(default_factory=dict)


@torch.inference_mode()
def measure_latency_ms(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 15, warmup: int = 3,
                       clock: str = "thread") -> float:
    """CPU latency of one forward pass (ms) on a random input of ``input_shape``: the minimum over ``repeats``.

    ``clock="thread"`` (default) measures the CPU time of the calling thread with torch limited to one intra-op
    thread, so time the OS gives to other processes on a shared machine does not count; on an idle core it equals
    wall-clock latency. ``clock="wall"`` measures wall-clock time with torch's current thread setting. The minimum
    is the estimator least disturbed by interference (every disturbance only adds time).
    """
    model.eval()
    x = torch.randn(*input_shape)
    threads = torch.get_num_threads()
    if clock == "thread":
        torch.set_num_threads(1)
        now = time.thread_time
    else:
        now = time.perf_counter
    try:
        for _ in range(warmup):
            model(x)
        best = float("inf")
        for _ in range(repeats):
            t0 = now()
            model(x)
            best = min(best, now() - t0)
    finally:
        torch.set_num_threads(threads)
    return 1e3 * best


def measure_many_ms(jobs: list[tuple[nn.Module, tuple[int, ...]]], rounds: int = 3, repeats: int = 5) -> np.ndarray:
    """Latency (ms) of several models, measured round-robin: ``rounds`` passes over all models, ``repeats`` calls
    each per pass, the minimum kept. Interleaving spreads a burst of load from other processes over every model
    instead of letting it inflate the few measured while it lasted."""
    best = np.full(len(jobs), np.inf)
    for _ in range(rounds):
        for i, (model, shape) in enumerate(jobs):
            best[i] = min(best[i], measure_latency_ms(model, shape, repeats=repeats, warmup=1))
    return best


def arch_features(space: ElasticSpace, genes: np.ndarray) -> np.ndarray:
    g = space.canonical(space.validate(genes))
    onehot = space.features(g, interactions=False)
    numeric = []
    for row in g:
        a = space.decode(row)
        feats = [a.resolution]
        for s in range(space.n_stages):
            d = a.depth[s]
            feats += [d, float(np.mean(a.expand[s][:d])), float(np.mean(a.kernel[s][:d]))]
        numeric.append(feats)
    return np.concatenate([onehot, np.asarray(numeric, dtype=np.float32)], axis=1)


def capacity_features(space: ElasticSpace, genes: np.ndarray) -> np.ndarray:
    """Ordinal summaries of a subnet's capacity (no supernet needed): resolution, then per stage the depth, the
    summed expand ratio and the summed receptive growth (kernel - 1) of its active blocks, the per-stage products
    depth x resolution, then totals: log multiply-adds per input side squared (sum over blocks of expand x
    kernel^2 / stride^2), active blocks, and the last stage's capacity alone (the head reads it)."""
    g = space.canonical(space.validate(genes))
    rows = []
    for row in g:
        a = space.decode(row)
        feats = [a.resolution / max(space.resolutions)]
        work, blocks = 0.0, 0
        scale = 1.0
        for s in range(space.n_stages):
            d = a.depth[s]
            e = a.expand[s][:d]
            k = a.kernel[s][:d]
            feats += [d, float(sum(e)), float(sum(v - 1 for v in k)), d * a.resolution / max(space.resolutions)]
            scale = scale / 4.0 if s > 0 else scale
            work += scale * sum(ei * (ki * ki + 2) for ei, ki in zip(e, k))
            blocks += d
        feats += [np.log(work * a.resolution**2), blocks, feats[-3] * feats[-4]]
        rows.append(feats)
    return np.asarray(rows, dtype=np.float64)


class AccuracyPredictor:
    """Predicted held-out accuracy (%) of a subnet from its architecture.

    Two model families are fitted on the measured subnets and the one with the better cross-validated rank
    correlation is kept (``kind``):

    * ``ridge``: ridge regression (penalty by cross-validation) on the one-hot genes plus ordinal summaries;
    * ``gp``: a Gaussian process on the ordinal capacity summaries (``capacity_features``) and the one-hot genes
      (ARD-free RBF + white noise, hyperparameters by marginal likelihood): accuracy is a smooth, saturating function
      of capacity, which a linear model misses at both ends of the space.
    """

    def __init__(self, space: ElasticSpace, kind: str = "auto", folds: int = 5, seed: int = 0) -> None:
        self.space, self.kind, self.folds, self.seed = space, kind, folds, seed
        self.model = RidgeCV(alphas=np.logspace(-3, 3, 13))
        self._mu = self._sd = None
        self.cv_spearman: dict[str, float] = {}

    def _inputs(self, kind: str, genes: np.ndarray) -> np.ndarray:
        if kind == "ridge":
            return np.concatenate([arch_features(self.space, genes), capacity_features(self.space, genes)], axis=1)
        return np.concatenate([capacity_features(self.space, genes),
                               0.5 * self.space.features(self.space.canonical(genes), interactions=False)], axis=1)

    def _new(self, kind: str):
        if kind == "ridge":
            return RidgeCV(alphas=np.logspace(-3, 3, 13))
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(3.0, (0.1, 100.0)) + WhiteKernel(0.1, (1e-4, 1.0))
        return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=self.seed)

    def _fit_kind(self, kind: str, genes: np.ndarray, accuracy: np.ndarray):
        x = self._inputs(kind, genes)
        mu, sd = x.mean(0), x.std(0) + 1e-6
        model = self._new(kind).fit((x - mu) / sd, accuracy)
        return model, mu, sd

    def fit(self, genes: np.ndarray, accuracy: np.ndarray) -> "AccuracyPredictor":
        genes = self.space.canonical(self.space.validate(genes))
        accuracy = np.asarray(accuracy, dtype=float)
        kinds = ["ridge", "gp"] if self.kind == "auto" else [self.kind]
        if len(kinds) > 1 and len(genes) >= 2 * self.folds:
            from sklearn.model_selection import KFold

            for kind in kinds:
                pred = np.zeros(len(genes))
                for tr, te in KFold(self.folds, shuffle=True, random_state=self.seed).split(genes):
                    model, mu, sd = self._fit_kind(kind, genes[tr], accuracy[tr])
                    pred[te] = model.predict((self._inputs(kind, genes[te]) - mu) / sd)
                self.cv_spearman[kind] = float(spearmanr(accuracy, pred).statistic)
            chosen = max(kinds, key=lambda k: self.cv_spearman[k])
        else:
            chosen = kinds[0] if self.kind != "auto" else "ridge"
        self.fitted_kind = chosen
        self.model, self._mu, self._sd = self._fit_kind(chosen, genes, accuracy)
        self._train = (genes, accuracy)
        return self

    def predict(self, genes: np.ndarray) -> np.ndarray:
        g = self.space.canonical(self.space.validate(np.atleast_2d(genes)))
        return self.model.predict((self._inputs(self.fitted_kind, g) - self._mu) / self._sd)

    def to_json(self) -> dict:
        """What reproduces the predictor: its kind, and the measured subnets it was fitted on (refit is
        deterministic); for ridge also the coefficients."""
        genes, acc = self._train
        out = {"kind": self.fitted_kind, "cv_spearman": self.cv_spearman, "genes": genes.tolist(), "accuracy":
               acc.tolist(), "mu": self._mu.tolist(), "sd": self._sd.tolist()}
        if self.fitted_kind == "ridge":
            out |= {"alpha": float(self.model.alpha_), "coef": self.model.coef_.tolist(),
                    "intercept": float(self.model.intercept_)}
        return out


class LatencyPredictor:
    """Per-block lookup table (ms) + a fitted linear correction of the sum."""

    def __init__(self, space: ElasticSpace, table: dict[tuple, float], base: dict[int, float], batch_size: int,
                 sides: dict[int, list[tuple[int, int]]]) -> None:
        # table key: (stage, slot kind 0 = first / 1 = later, expand, kernel, input side); base: resolution -> ms
        self.space, self.table, self.base, self.batch_size, self.sides = space, table, base, batch_size, sides
        self.correction = (1.0, 0.0, 0.0)  # (scale of the lookup sum, intercept ms, ms per active block)

    def lookup_ms(self, arch: ElasticArch) -> float:
        total = self.base[arch.resolution]
        for s, b, e, k in arch.active_blocks():
            total += self.table[(s, min(b, 1), e, k, self.sides[arch.resolution][s][min(b, 1)])]
        return total

    def raw(self, genes: np.ndarray) -> np.ndarray:
        return np.array([self.lookup_ms(self.space.decode(g)) for g in np.atleast_2d(genes)])

    def _design(self, genes: np.ndarray) -> np.ndarray:
        g = np.atleast_2d(genes)
        blocks = [len(self.space.decode(row).active_blocks()) for row in g]
        return np.stack([self.raw(g), np.asarray(blocks, dtype=float)], axis=1)

    def fit_correction(self, genes: np.ndarray, measured_ms: np.ndarray) -> "LatencyPredictor":
        """Least squares: measured ~ a * lookup sum + c * active blocks + b (c absorbs per-block call overhead
        that isolated measurements count differently)."""
        reg = LinearRegression().fit(self._design(genes), np.asarray(measured_ms, dtype=float))
        self.correction = (float(reg.coef_[0]), float(reg.intercept_), float(reg.coef_[1]))
        return self

    def predict(self, genes: np.ndarray) -> np.ndarray:
        a, b, c = self.correction
        x = self._design(genes)
        return a * x[:, 0] + c * x[:, 1] + b


def _stage_sides(net: ElasticSupernet, resolution: int) -> list[tuple[int, int]]:
    """Input side of (the first block, the later blocks) of each stage at ``resolution``."""
    side = resolution  # the stem keeps the side (stride 1, padding 1)
    sides = []
    for stride in net.config.stage_strides:
        out = (side - 1) // stride + 1  # odd kernel k, padding k // 2
        sides.append((side, out))
        side = out
    return sides


def build_latency_table(net: ElasticSupernet, batch_size: int = 32, repeats: int = 5, rounds: int = 3) -> LatencyPredictor:
    """Measure every distinct block shape in isolation at every input side it sees, plus stem + head per resolution."""
    space = net.config.space
    torch.manual_seed(0)
    sides = {r: _stage_sides(net, r) for r in space.resolutions}
    keys: list[tuple] = []
    jobs: list[tuple[nn.Module, tuple[int, ...]]] = []
    for r in space.resolutions:
        for s, stage in enumerate(net.stages):
            for slot in range(min(2, space.max_depth)):
                blk = stage[slot]
                side = sides[r][s][slot]
                for e in space.expand_ratios:
                    for k in space.kernel_sizes:
                        key = (s, slot, e, k, side)
                        if key in keys:
                            continue
                        keys.append(key)
                        jobs.append((InvertedResidual(blk.in_ch, blk.in_ch * e, blk.out_ch, blk.stride, k),
                                     (batch_size, blk.in_ch, side, side)))
    for r in space.resolutions:
        stem = _StemBlock(nn.Conv2d(net.config.in_channels, net.config.stem_channels, 3, 1, 1, bias=False),
                          nn.BatchNorm2d(net.config.stem_channels))
        # stem + pooling + head: a subnet with no blocks whose head reads stem channels
        head = nn.Linear(net.config.stem_channels, net.config.num_classes)
        keys.append(("base", r))
        jobs.append((Subnet(r, stem, [], head), (batch_size, net.config.in_channels, r, r)))
    ms = measure_many_ms(jobs, rounds=rounds, repeats=repeats)
    table = {k: float(v) for k, v in zip(keys, ms) if k[0] != "base"}
    base = {k[1]: float(v) for k, v in zip(keys, ms) if k[0] == "base"}
    return LatencyPredictor(space, table, base, batch_size, sides)


def _report(name: str, y_true, y_pred, n_train: int, unit: str, **detail) -> PredictorReport:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    rho = float(spearmanr(y_true, y_pred).statistic) if len(y_true) > 2 else float("nan")
    return PredictorReport(name, n_train, len(y_true), rho, float(np.sqrt(np.mean((y_true - y_pred) ** 2))), unit, detail)


def fit_predictors(net: ElasticSupernet, data: Dataset, *, n_accuracy: int = 80, n_latency: int = 40,
                   holdout_fraction: float = 0.3, batch_size: int = 32, repeats: int = 5, seed: int = 0):
    """Sample subnets, measure them, fit both predictors on a split and report on the held-out rest.

    Returns (accuracy predictor, latency predictor, [accuracy report, latency report], samples) where samples holds
    the measured (genes, accuracy %) and (genes, latency ms) arrays.
    """
    space = net.config.space
    rng = np.random.default_rng(seed)
    genes_a = np.unique(np.concatenate([space.sample(rng, n_accuracy - 2),
                                        np.stack([space.encode(space.largest()), space.encode(space.smallest())])]), axis=0)
    acc = np.array([subnet_accuracy(net, space.decode(g), data) for g in genes_a])
    genes_l = np.unique(space.sample(rng, n_latency), axis=0)
    lat = measure_many_ms([(extract_subnet(net, space.decode(g)), (batch_size, net.config.in_channels, data.side,
                                                                  data.side)) for g in genes_l], repeats=repeats)
    reports = []
    split_a = rng.permutation(len(genes_a))
    n_hold_a = max(3, int(round(holdout_fraction * len(genes_a))))
    ta, ha = split_a[n_hold_a:], split_a[:n_hold_a]
    acc_pred = AccuracyPredictor(space).fit(genes_a[ta], acc[ta])
    reports.append(_report("accuracy", acc[ha], acc_pred.predict(genes_a[ha]), len(ta), "%",
                           model=acc_pred.fitted_kind, cv_spearman=acc_pred.cv_spearman))
    acc_pred.fit(genes_a, acc)  # final model uses every measurement
    lat_pred = build_latency_table(net, batch_size, repeats)
    split_l = rng.permutation(len(genes_l))
    n_hold_l = max(3, int(round(holdout_fraction * len(genes_l))))
    tl, hl = split_l[n_hold_l:], split_l[:n_hold_l]
    lat_pred.fit_correction(genes_l[tl], lat[tl])
    reports.append(_report("latency", lat[hl], lat_pred.predict(genes_l[hl]), len(tl), "ms",
                           lookup_only_spearman=float(spearmanr(lat[hl], lat_pred.raw(genes_l[hl])).statistic),
                           batch_size=batch_size))
    lat_pred.fit_correction(genes_l, lat)
    return acc_pred, lat_pred, reports, {"accuracy": (genes_a, acc), "latency": (genes_l, lat)}


class PredictorObjective:
    """Objective source: predicted accuracy (%) and predicted latency (ms) of elastic subnets."""

    def __init__(self, space: ElasticSpace, accuracy: AccuracyPredictor, latency: LatencyPredictor) -> None:
        self.space, self.accuracy, self.latency = space, accuracy, latency

    def evaluate(self, genes) -> np.ndarray:
        g = self.space.validate(genes)
        return np.stack([self.accuracy.predict(g), self.latency.predict(g)], axis=1)


class SupernetObjective:
    """Objective source: measured accuracy (%) of the extracted, BN-recalibrated subnet and predicted latency (ms).
    Picklable, so batches can be evaluated on Dask workers."""

    def __init__(self, net: ElasticSupernet, data: Dataset, latency: LatencyPredictor) -> None:
        self.net, self.data, self.latency = net, data, latency
        self.space = net.config.space

    def evaluate(self, genes) -> np.ndarray:
        g = self.space.validate(genes)
        torch.set_num_threads(1)
        acc = np.array([subnet_accuracy(self.net, self.space.decode(row), self.data) for row in g])
        return np.stack([acc, self.latency.predict(g)], axis=1)
