"""Drivers that carry out the search state machine's instructions: evaluate batches, serially or on an executor.

``run_search`` alternates ``ask`` / evaluate / ``tell`` until the evaluation budget is spent or the space is
exhausted. Batches are split into chunks submitted to ``executor`` (``tasks.dask_fanout``'s contract: a Dask client,
a ``ThreadPoolExecutor``; ``SERIAL`` evaluates in-process). ``random_search``
is the baseline: distinct architectures drawn uniformly without replacement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

import numpy as np
from threadpoolctl import threadpool_limits

from forgeflow.tasks.dask_fanout import SERIAL, runs_in_parallel
from forgeflow.tasks.supernet.evolution import EvolutionConfig, EvolutionarySearch
from forgeflow.tasks.supernet.pareto import non_dominated_mask
from forgeflow.tasks.supernet.space import CategoricalSpace


class SearchStatus(str, Enum):
    BUDGET_SPENT = "budget_spent"  # stopped after ``budget`` evaluations
    SPACE_EXHAUSTED = "space_exhausted"  # every member evaluated: the front is exact
    NOT_RUN = "not_run"


@dataclass(frozen=True)
class SearchResult:
    """What the search found. ``accuracy`` in %, ``latency_ms`` in ms; front rows sorted by latency."""

    space: str
    status: SearchStatus
    evaluations: int
    seconds: float
    genes: np.ndarray  # every evaluated architecture, in evaluation order (n, g)
    accuracy: np.ndarray  # (n,)
    latency_ms: np.ndarray  # (n,)
    front_index: np.ndarray  # rows of ``genes`` on the Pareto front (max accuracy, min latency), by latency
    detail: Mapping[str, Any] = field(default_factory=dict)

    def best_under(self, latency_limit_ms: float) -> int | None:
        """Row of the most accurate evaluated architecture within the latency limit (None if none fits)."""
        ok = np.flatnonzero(self.latency_ms <= latency_limit_ms)
        if ok.size == 0:
            return None
        return int(ok[np.argmax(self.accuracy[ok])])


def _objectives(values: np.ndarray) -> np.ndarray:
    """[accuracy %, latency ms] -> minimised [-accuracy, latency]."""
    return np.stack([-values[:, 0], values[:, 1]], axis=1)


def _evaluate_batch(evaluate: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, executor, chunk: int) -> np.ndarray:
    if not runs_in_parallel(executor) or len(batch) <= chunk:
        return np.asarray(evaluate(batch), dtype=float)
    futures = [executor.submit(evaluate, batch[i : i + chunk]) for i in range(0, len(batch), chunk)]
    return np.concatenate([np.asarray(f.result(), dtype=float) for f in futures])


def _result(space: CategoricalSpace, genes, values, seconds, status, detail) -> SearchResult:
    genes = np.asarray(genes, dtype=np.int64).reshape(-1, space.n_genes)
    values = np.asarray(values, dtype=float).reshape(-1, 2)
    if len(values):
        mask = non_dominated_mask(_objectives(values))
        idx = np.flatnonzero(mask)
        idx = idx[np.lexsort((-values[idx, 0], values[idx, 1]))]
    else:
        idx = np.zeros(0, dtype=np.int64)
    return SearchResult(
        space=space.name,
        status=status,
        evaluations=len(genes),
        seconds=seconds,
        genes=genes,
        accuracy=values[:, 0].copy(),
        latency_ms=values[:, 1].copy(),
        front_index=idx,
        detail=dict(detail),
    )


def run_search(
    space: CategoricalSpace,
    evaluate: Callable[[np.ndarray], np.ndarray],
    budget: int,
    *,
    seed: int = 0,
    config: EvolutionConfig = EvolutionConfig(),
    latency_limit_ms: float | None = None,
    executor: Any = SERIAL,
    chunk_size: int = 16,
    charge: Callable[[np.ndarray], object] | None = None,
) -> SearchResult:
    """Multi-objective (accuracy up, latency down) search with at most ``budget`` evaluations.

    ``evaluate(genes (k, g)) -> (k, 2)`` returns [accuracy %, latency ms]; it must be picklable when ``executor`` is
    a Dask client. With ``latency_limit_ms`` the search concentrates on architectures within the limit.
    ``charge(batch)`` is called on the driver before each batch is evaluated (e.g. ``CountedEvaluator.charge``,
    which raises once the budget would be exceeded), so budgets hold even when workers do the evaluating.
    """
    if budget < 1:
        raise ValueError("budget must be at least 1")
    with threadpool_limits(limits=1):  # small matrices and ~1,000-row tree fits: threads cost more than they save
        return _run_search(space, evaluate, budget, seed, config, latency_limit_ms, executor, chunk_size, charge)


def _run_search(space, evaluate, budget, seed, config, latency_limit_ms, executor, chunk_size, charge) -> SearchResult:
    start = time.perf_counter()
    machine = EvolutionarySearch(space, seed=seed, config=config, limits=(None, latency_limit_ms), budget=budget)
    genes: list[np.ndarray] = []
    values: list[np.ndarray] = []
    asks = 0
    while machine.n_evaluated < budget and not machine.exhausted:
        batch = machine.ask(min(machine.next_batch_size(), budget - machine.n_evaluated))
        if len(batch) == 0:
            break
        asks += 1
        if charge is not None:
            charge(batch)
        vals = _evaluate_batch(evaluate, batch, executor, chunk_size)
        machine.tell(batch, _objectives(vals))
        genes.append(batch)
        values.append(vals)
    status = SearchStatus.SPACE_EXHAUSTED if machine.exhausted else SearchStatus.BUDGET_SPENT
    g = np.concatenate(genes) if genes else np.zeros((0, space.n_genes), dtype=np.int64)
    v = np.concatenate(values) if values else np.zeros((0, 2))
    return _result(space, g, v, time.perf_counter() - start, status, {"asks": asks, "seed": seed, "method": "evolution"})


def random_search(
    space: CategoricalSpace,
    evaluate: Callable[[np.ndarray], np.ndarray],
    budget: int,
    *,
    seed: int = 0,
    enumerate_limit: int = 200_000,
) -> SearchResult:
    """Baseline: ``budget`` distinct architectures drawn uniformly at random, evaluated in one batch."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    if space.size <= enumerate_limit:
        members = space.enumerate(limit=enumerate_limit)
        genes = members[rng.choice(len(members), size=min(budget, len(members)), replace=False)]
    else:
        seen: dict[tuple[int, ...], np.ndarray] = {}
        for _ in range(100):
            for row in space.sample(rng, budget):
                seen.setdefault(space.key(row), row)
            if len(seen) >= budget:
                break
        genes = np.stack(list(seen.values())[:budget])
    vals = np.asarray(evaluate(genes), dtype=float)
    status = SearchStatus.SPACE_EXHAUSTED if len(genes) >= space.size else SearchStatus.BUDGET_SPENT
    return _result(space, genes, vals, time.perf_counter() - start, status, {"seed": seed, "method": "random"})
