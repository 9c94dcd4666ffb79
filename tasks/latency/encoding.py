"""Architecture encodings for latency models, taken from the search space so NB201 cells and supernet genes share
one code path.

Three blocks, each a matrix with one row per architecture:

* ``ops``: one-hot per gene (the per-edge / per-block operation choice: an additive per-op latency lookup table);
* ``pairs``: one-hot per interacting gene group (``space.interaction_groups``: joint choices, e.g. two convolutions
  that run in parallel on a GPU cost less than their sum);
* ``counts``: how often each operation occurs (``space.op_counts``), for spaces where that is defined: a device whose
  cost is a sum of per-operation costs is described by 4 numbers instead of 24.

``features`` is ``ops`` and ``pairs`` side by side: every latency model in ``tasks.latency`` is linear in it (the
known devices' smoothed latencies included), so a fitted model predicts any member of the space, measured or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.supernet.space import CategoricalSpace


@dataclass(frozen=True)
class ArchEncoding:
    space: CategoricalSpace

    @property
    def n_ops(self) -> int:
        return int(sum(self.space.cardinalities))

    def features(self, genes: np.ndarray) -> np.ndarray:
        """(n, d) float64: one-hot per gene, then one-hot per interacting group."""
        return self.space.features(np.asarray(genes, dtype=np.int64), interactions=True).astype(np.float64)

    def counts(self, genes: np.ndarray) -> np.ndarray | None:
        c = self.space.op_counts(np.asarray(genes, dtype=np.int64))
        return None if c is None else np.asarray(c, dtype=np.float64)

    def n_groups(self) -> int:
        groups = self.space.interaction_groups
        if groups is None:
            return self.space.n_genes * (self.space.n_genes - 1) // 2
        return len(groups)
