"""Surrogate-assisted multi-objective evolution as a pure ask/tell state machine.

Events in, instructions out, no I/O (the dask/distributed ``WorkerState`` shape): ``ask()`` returns the next batch of
distinct, never-evaluated architectures to evaluate; ``tell(genes, objectives)`` records their measured objectives.
Whoever drives the machine decides how to evaluate (serially, a thread pool, Dask) and when to stop; the machine is
deterministic for a seed, so two drivers that evaluate the same way get the same search.

Objectives are all MINIMISED (the driver passes ``-accuracy``); the first is the one to make best (accuracy), the
second the one users put limits on (latency). Each ``ask`` after a random initial design:

1. builds a candidate pool: every unevaluated member when the space is small enough to enumerate, otherwise NSGA-II
   offspring (binary tournaments on non-dominated rank and crowding distance, uniform crossover, mutation) of the
   evaluated archive; the pool is bounded, so there is no rejection loop that could run forever;
2. fits surrogates on everything evaluated so far (``surrogate.py``): a ridge model per objective on one-hot and
   interaction features (additive per-block latency plus pairwise corrections), and gradient-boosted trees on the
   space's ``model_inputs`` (what the architecture computes: genes, or for NAS-Bench-201 the representative of the
   cell's expression class, with skip chains collapsed, and path summaries) for the objectives in
   ``boosted_objectives`` (accuracy, which is far from additive); the trees predict each distinct input row once;
3. picks part of the batch greedily by the hypervolume each candidate would add to the evaluated front, using the
   ridge's optimistic predictions (mean minus ``optimism`` x its leave-one-out RMSE); each pick is added to the front
   at its predicted mean (the "believer" update) so one batch spreads along the whole front;
4. picks the rest (``level_fraction``, ramped up linearly until the archive holds ``level_ramp`` evaluations, so
   short searches stay hypervolume-greedy) level by level: ``levels`` thresholds at quantiles of the candidates'
   predicted second objective, and, round-robin over them, the candidate with the best first objective under each
   threshold as the trees predict it. Hypervolume greed rewards large areas; the best architecture under a given latency limit is
   decided by fractions of a point of accuracy among many near-equal cells, and only evaluating the predicted best
   under every limit finds it.

Batches grow with the archive (``batch_fraction``), so a 1,000-evaluation search refits its surrogates ~25 times.
An optional upper limit on the second objective (``limits=(None, L)``, e.g. latency <= L ms) makes every other level
pick the next predicted best under L (plus the latency model's leave-one-out RMSE, since a cell predicted just over L
may fit), while the other picks and the hypervolume greed keep the whole front in view. Moving the hypervolume
reference point and all levels inside the limit was measured worse on NAS-Bench-201 (74.1 % against 92.6 % of 54
cases within 0.1 pp of the best under the limit): the cells that decide the best under L sit at L, and a search
confined below L learns too little about the region around it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.supernet.pareto import hypervolume_improvement_2d, non_dominated_mask, non_dominated_ranks, crowding_distance
from forgeflow.tasks.supernet.space import CategoricalSpace
from forgeflow.tasks.supernet.surrogate import BoostedSurrogate, RidgeSurrogate


@dataclass(frozen=True)
class EvolutionConfig:
    """Search hyper-parameters. They are fixed across devices and datasets: nothing here is tuned per target."""

    initial_samples: int | None = None  # random design before the first fit; None: 6 % of the budget, within 24..60
    min_batch: int = 16  # architectures per ask while the archive is small
    batch_fraction: float = 0.1  # later batches grow with the archive (refits stay cheap, asks stay few)
    max_batch: int = 96
    enumerate_limit: int = 50_000  # spaces up to this size are screened exhaustively
    pool_size: int = 6_000  # NSGA-II offspring screened per ask in larger spaces
    mutation_rate: float = 0.2
    crossover_fraction: float = 0.5
    optimism: float = 1.0  # multiples of the ridge surrogate's leave-one-out RMSE
    exploration_fraction: float = 0.0  # share of each batch drawn uniformly from the pool
    level_fraction: float = 0.5  # share of each batch picked as the predicted best under each level (step 4)
    level_ramp: int = 600  # the level share grows linearly with the archive, full from this many evaluations
    levels: int = 32  # thresholds on the second objective, at quantiles of the candidates' predictions
    boosted_objectives: tuple[int, ...] = (0,)  # objectives predicted by gradient-boosted trees (others: ridge only)
    boosting_iterations: int = 150
    min_boosting_samples: int = 40  # below this many evaluations the ridge predicts every objective
    interactions: bool = True  # pairwise (group) features in the ridge surrogate


class EvolutionarySearch:
    """Ask/tell multi-objective search over a ``CategoricalSpace`` (2 objectives, both minimised)."""

    def __init__(
        self,
        space: CategoricalSpace,
        *,
        seed: int = 0,
        config: EvolutionConfig = EvolutionConfig(),
        limits: tuple[float | None, float | None] = (None, None),
        budget: int | None = None,
    ) -> None:
        self.space = space
        self.config = config
        if config.initial_samples is not None:
            self.initial_samples = int(config.initial_samples)
        else:
            self.initial_samples = int(np.clip(round(0.06 * budget), 24, 60)) if budget else 24
        self.limits = limits
        self.rng = np.random.default_rng(seed)
        self._genes: list[np.ndarray] = []
        self._objectives: list[np.ndarray] = []
        self._seen: set[tuple[int, ...]] = set()
        self._pending: set[tuple[int, ...]] = set()
        self._all: np.ndarray | None = None
        self._all_features: np.ndarray | None = None
        if space.size <= config.enumerate_limit:
            # small space: screen every member; ``_used`` marks the ones asked or evaluated
            (self._all, self._all_features, self._all_keys, self._all_inputs, self._all_unique,
             self._all_unique_id) = _enumerated(space, config.enumerate_limit, config.interactions)
            self._used = np.zeros(len(self._all), dtype=bool)

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def n_evaluated(self) -> int:
        return len(self._genes)

    @property
    def exhausted(self) -> bool:
        return len(self._seen) + len(self._pending) >= self.space.size

    def archive(self) -> tuple[np.ndarray, np.ndarray]:
        """All evaluated (genes (n, g), objectives (n, 2)) in evaluation order."""
        if not self._genes:
            return np.zeros((0, self.space.n_genes), dtype=np.int64), np.zeros((0, 2))
        return np.stack(self._genes), np.stack(self._objectives)

    def front(self) -> tuple[np.ndarray, np.ndarray]:
        """The non-dominated evaluated architectures, sorted by the second objective."""
        g, f = self.archive()
        if len(g) == 0:
            return g, f
        mask = non_dominated_mask(f)
        g, f = g[mask], f[mask]
        order = np.lexsort((f[:, 0], f[:, 1]))
        return g[order], f[order]

    # -- events -------------------------------------------------------------------------------------------------
    def tell(self, genes, objectives) -> None:
        g = self.space.validate(genes)
        f = np.asarray(objectives, dtype=float).reshape(len(g), -1)
        if f.shape[1] != 2:
            raise ValueError(f"expected 2 objectives per architecture, got {f.shape[1]}")
        if not np.all(np.isfinite(f)):
            raise ValueError("objective values must be finite")
        for row, obj in zip(g, f):
            key = self.space.key(row)
            self._pending.discard(key)
            if key in self._seen:
                continue
            self._seen.add(key)
            if self._all is not None:
                self._used[self._all_keys[key]] = True
            self._genes.append(np.asarray(key, dtype=np.int64))
            self._objectives.append(obj)

    def ask(self, n: int | None = None) -> np.ndarray:
        """The next batch (k, g) of distinct architectures never asked before; k <= n (0 when the space is spent)."""
        cfg = self.config
        if n is None:
            n = self.next_batch_size()
        if n <= 0 or self.exhausted:
            return np.zeros((0, self.space.n_genes), dtype=np.int64)
        if self.n_evaluated < max(self.initial_samples, 3):
            n = min(n, max(self.initial_samples - self.n_evaluated - len(self._pending), 1))
            batch = self._random_unseen(n)
        else:
            batch = self._surrogate_batch(n)
        for row in batch:
            key = self.space.key(row)
            self._pending.add(key)
            if self._all is not None:
                self._used[self._all_keys[key]] = True
        return batch

    def next_batch_size(self) -> int:
        cfg = self.config
        if self.n_evaluated < self.initial_samples:
            return self.initial_samples - self.n_evaluated
        return int(min(cfg.max_batch, max(cfg.min_batch, round(cfg.batch_fraction * self.n_evaluated))))

    # -- internals ----------------------------------------------------------------------------------------------
    def _is_unseen(self, row) -> bool:
        key = self.space.key(row)
        return key not in self._seen and key not in self._pending

    def _random_unseen(self, n: int) -> np.ndarray:
        if self._all is not None:
            free = np.flatnonzero(~self._used)
            return self._all[self.rng.choice(free, size=min(n, len(free)), replace=False)]
        out: list[np.ndarray] = []
        keys: set[tuple[int, ...]] = set()
        for _ in range(50):  # bounded: each round draws many candidates
            for row in self.space.sample(self.rng, 4 * n):
                key = self.space.key(row)
                if key in keys or not self._is_unseen(row):
                    continue
                keys.add(key)
                out.append(row)
                if len(out) == n:
                    return np.stack(out)
        return np.stack(out) if out else np.zeros((0, self.space.n_genes), dtype=np.int64)

    def _offspring_pool(self) -> np.ndarray:
        cfg = self.config
        g, f = self.archive()
        ranks = non_dominated_ranks(f)
        crowd = np.zeros(len(f))
        for r in np.unique(ranks):
            idx = np.flatnonzero(ranks == r)
            crowd[idx] = crowding_distance(f[idx])
        m = cfg.pool_size
        # binary tournaments: lower rank wins, then larger crowding distance
        a, b = self.rng.integers(0, len(g), size=(2, 2 * m))
        a_wins = (ranks[a] < ranks[b]) | ((ranks[a] == ranks[b]) & (crowd[a] >= crowd[b]))
        parents = np.where(a_wins, a, b)
        p1, p2 = g[parents[:m]], g[parents[m:]]
        n_cross = int(cfg.crossover_fraction * m)
        children = np.concatenate([self.space.crossover(self.rng, p1[:n_cross], p2[:n_cross]), p1[n_cross:]])
        children = self.space.mutate(self.rng, children, cfg.mutation_rate)
        children = np.unique(children, axis=0)
        keep = np.array([self._is_unseen(row) for row in children], dtype=bool)
        return children[keep]

    def _surrogate_batch(self, n: int) -> np.ndarray:
        cfg = self.config
        g, f = self.archive()
        if self._all is not None:
            idx = np.array([self._all_keys[self.space.key(row)] for row in g])
            x_train, c_train = self._all_features[idx], self._all_inputs[idx]
            free = np.flatnonzero(~self._used)
            pool, x_pool, c_pool = self._all[free], self._all_features[free], self._all_inputs[free]
            # many cells share their tree inputs (what they compute): the trees predict each distinct row once
            ids, inverse = np.unique(self._all_unique_id[free], return_inverse=True)
            uniq = self._all_unique[ids]
        else:
            x_train = self.space.features(g, interactions=cfg.interactions)
            c_train = self.space.model_inputs(g)
            pool = self._offspring_pool()
            x_pool = self.space.features(pool, interactions=cfg.interactions)
            c_pool = self.space.model_inputs(pool)
            uniq, inverse = np.unique(c_pool, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        if len(pool) == 0:
            return pool
        model = RidgeSurrogate().fit(x_train, f)
        mean = model.predict(x_pool)
        optimistic = mean - cfg.optimism * model.rmse_[None, :]
        level_mean = mean
        boosted = [j for j in cfg.boosted_objectives if 0 <= j < f.shape[1]]
        if boosted and len(g) >= cfg.min_boosting_samples:
            trees = BoostedSurrogate(max_iter=cfg.boosting_iterations, categorical=self.space.categorical_inputs)
            trees.fit(c_train, f[:, boosted])
            level_mean = mean.copy()
            level_mean[:, boosted] = trees.predict(uniq)[inverse]
        return pool[self._greedy_hypervolume(f, mean, optimistic, n, level_mean, float(model.rmse_[-1]))]

    @staticmethod
    def _reference(f: np.ndarray, pred: np.ndarray) -> np.ndarray:
        both = np.concatenate([f, pred])
        lo, hi = both.min(axis=0), both.max(axis=0)
        return hi + 0.01 * np.maximum(hi - lo, 1e-12)

    def _greedy_hypervolume(self, f: np.ndarray, mean: np.ndarray, optimistic: np.ndarray, n: int,
                            level_mean: np.ndarray | None = None, slack: float = 0.0) -> np.ndarray:
        cfg = self.config
        ref = self._reference(f, mean)
        front = f[non_dominated_mask(f)]
        chosen: list[int] = []
        available = np.ones(len(mean), dtype=bool)
        n = min(n, len(mean))
        n_explore = int(round(cfg.exploration_fraction * n))
        level_fraction = cfg.level_fraction
        if cfg.level_ramp > 0:
            level_fraction *= min(1.0, len(f) / cfg.level_ramp)
        n_greedy = n - n_explore - int(round(level_fraction * n))
        # Hypervolume improvement only shrinks as the front grows (it is submodular), so after the first pass only
        # the candidates that still gain anything need re-scoring: the greedy stays exact and cheap.
        gain = hypervolume_improvement_2d(front, optimistic, ref)
        live = np.flatnonzero(gain > 0)
        while len(chosen) < n_greedy and live.size:
            best = int(live[np.argmax(gain[live])])
            chosen.append(best)
            available[best] = False
            front = np.vstack([front, mean[best]])
            front = front[non_dominated_mask(front)]
            live = live[live != best]
            if live.size:
                gain[live] = hypervolume_improvement_2d(front, optimistic[live], ref)
                live = live[gain[live] > 0]
        rest = np.flatnonzero(available)
        n_level = min(n - n_explore - len(chosen), rest.size)  # also fills what the greedy pass left
        if n_level > 0:
            lm = mean if level_mean is None else level_mean
            # under a limit, a candidate predicted over it by less than the latency model's error may still fit
            limit = None if self.limits[1] is None else self.limits[1] + slack
            picks = rest[_level_picks(lm[rest], n_level, cfg.levels, limit)]
            chosen.extend(int(i) for i in picks)
            available[picks] = False
            rest = np.flatnonzero(available)
        if n_explore and rest.size:
            chosen.extend(self.rng.choice(rest, size=min(n_explore, rest.size), replace=False).tolist())
        return np.asarray(chosen, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _enumerated(space: CategoricalSpace, limit: int, interactions: bool):
    """Every member of a small space, its surrogate features, a key -> row index, its tree-model inputs, and the
    distinct input rows with each member's row among them (shared, read-only)."""
    members = space.enumerate(limit=limit)
    features = space.features(members, interactions=interactions)
    inputs = space.model_inputs(members)
    unique, unique_id = np.unique(inputs, axis=0, return_inverse=True)
    unique_id = unique_id.reshape(-1)
    for a in (members, features, inputs, unique, unique_id):
        a.setflags(write=False)
    keys = {tuple(int(v) for v in row): i for i, row in enumerate(members)}
    return members, features, keys, inputs, unique, unique_id


def _level_picks(mean: np.ndarray, n: int, levels: int, limit: float | None) -> np.ndarray:
    """``n`` rows of ``mean`` (k, 2), minimised objectives: round-robin over ``levels`` thresholds at quantiles of the
    predicted second objective (alternating with ``limit`` when given), the unpicked row with the best predicted first
    objective under each threshold; rows left over (nothing under any threshold) follow by the first objective."""
    second = mean[:, 1]
    thresholds = np.quantile(second, np.arange(1, levels + 1) / levels)
    if limit is not None:
        # every other pick is the next best under the limit; the rest keep the whole front in view
        thresholds = np.stack([thresholds, np.full(levels, limit)], axis=1).ravel()
    order = np.argsort(mean[:, 0], kind="stable")
    ordered_second = second[order]
    taken = np.zeros(len(order), dtype=bool)
    picks: list[int] = []
    while len(picks) < n:
        before = len(picks)
        for t in thresholds:
            if len(picks) == n:
                break
            under = np.flatnonzero(~taken & (ordered_second <= t))
            if under.size:
                taken[under[0]] = True
                picks.append(int(order[under[0]]))
        if len(picks) == before:
            break
    if len(picks) < n:
        picks.extend(int(i) for i in order[~taken][: n - len(picks)])
    return np.asarray(picks, dtype=np.int64)
