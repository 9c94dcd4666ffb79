"""Objective sources for the search: what an architecture's accuracy (%) and latency (ms) are.

An objective source is any object with ``space`` and ``evaluate(genes) -> ndarray (k, 2)`` returning
``[accuracy_pct, latency_ms]`` per row. Two are provided here:

* ``TableObjective``: a lookup table (NAS-Bench-201 with per-device latency), for benchmarking the search;
* ``PredictorObjective`` (in ``predictors.py``): the supernet's accuracy predictor and the latency predictor.

``CountedEvaluator`` wraps any source and enforces an evaluation budget: it counts DISTINCT architectures looked up
and refuses to look up more than ``budget`` of them, so a search cannot peek at the table beyond its budget.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from forgeflow.tasks.errors import ForgeflowError
from forgeflow.tasks.supernet.space import CategoricalSpace, InvalidArchitectureError


class BudgetExceededError(ForgeflowError):
    """More distinct architectures were requested than the evaluation budget allows."""


@dataclass
class TableObjective:
    """Accuracy and latency looked up from a table of (architecture string, accuracy %, latency ms) rows."""

    space: CategoricalSpace
    archs: list[str]
    accuracy: np.ndarray
    latency_ms: np.ndarray
    _index: dict[tuple[int, ...], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.accuracy = np.asarray(self.accuracy, dtype=float)
        self.latency_ms = np.asarray(self.latency_ms, dtype=float)
        if not (len(self.archs) == len(self.accuracy) == len(self.latency_ms)):
            raise InvalidArchitectureError("table columns have different lengths")
        if not (np.all(np.isfinite(self.accuracy)) and np.all(np.isfinite(self.latency_ms))):
            raise InvalidArchitectureError("table holds non-finite accuracy or latency values")
        self._index = {}
        for i, arch in enumerate(self.archs):
            self._index[self.space.key(self.space.from_string(arch))] = i

    def rows(self, genes) -> np.ndarray:
        g = self.space.validate(genes)
        try:
            return np.array([self._index[self.space.key(row)] for row in g], dtype=np.int64)
        except KeyError as exc:
            raise InvalidArchitectureError(f"architecture {exc.args[0]} is not in the table") from exc

    def evaluate(self, genes) -> np.ndarray:
        idx = self.rows(genes)
        return np.stack([self.accuracy[idx], self.latency_ms[idx]], axis=1)


class CountedEvaluator:
    """Budgeted, thread-safe access to an objective source; repeated look-ups of one architecture count once."""

    def __init__(self, source, budget: int) -> None:
        if budget < 1:
            raise BudgetExceededError(f"evaluation budget must be at least 1, got {budget}")
        self.source = source
        self.space = source.space
        self.budget = int(budget)
        self._seen: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    @property
    def evaluations(self) -> int:
        return len(self._seen)

    @property
    def remaining(self) -> int:
        return self.budget - len(self._seen)

    def evaluate(self, genes) -> np.ndarray:
        g = self.charge(genes)
        return self.source.evaluate(g)

    def charge(self, genes) -> np.ndarray:
        """Count ``genes`` against the budget (raising if it would be exceeded) without evaluating them."""
        g = self.space.validate(genes)
        keys = {self.space.key(row) for row in g}
        with self._lock:
            new = keys - self._seen
            if len(self._seen) + len(new) > self.budget:
                raise BudgetExceededError(
                    f"evaluating {len(new)} new architectures would exceed the budget of {self.budget} "
                    f"({len(self._seen)} already evaluated)"
                )
            self._seen |= new
        return g
