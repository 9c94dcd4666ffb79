"""Per-client state that outlives a round (error-feedback residuals), kept out of the server's memory.

A population of N clients with error feedback holds N residual vectors of the model's size. Keeping them in the
server state (and in every round checkpoint) makes memory and checkpoint cost grow with N; real cross-device
training samples m of thousands. Here each completed round writes the residuals of its m participants only, as
versioned entries ``(client, round) -> residual``; a sampled client gets the newest entry of a round <= the last
completed one. So a round costs O(m) reads and writes, the server keeps only an index (client -> newest round and
key, a few dozen bytes per client that ever took part), and a flow killed mid-round resumes exactly: entries of the
round that never completed are ignored because their round is past the checkpoint.

Two stores: ``MemoryClientState`` (tests, runs without persistence) and ``CatalogClientState`` (each residual a
content-addressed safetensors object; one ``federated_client_state`` row per participant and round).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow.compute as pc


class ClientStateStore(Protocol):
    def restore(self, upto_round: int) -> None:
        """Forget entries of rounds after ``upto_round`` (the last checkpointed round); load the index."""

    def residual(self, client_id: int) -> np.ndarray | None:
        """The client's newest residual of a completed round, or None if it never sent under error feedback."""

    def save_round(self, round_: int, residuals: dict[int, np.ndarray]) -> None:
        """Persist the residuals produced in ``round_`` (before that round's checkpoint is written)."""


class MemoryClientState:
    """Versioned residuals in a dict of lists: ``client -> [(round, residual), ...]``."""

    def __init__(self) -> None:
        self._entries: dict[int, list[tuple[int, np.ndarray]]] = {}

    def restore(self, upto_round: int) -> None:
        for c in list(self._entries):
            kept = [(r, v) for r, v in self._entries[c] if r <= upto_round]
            if kept:
                self._entries[c] = kept
            else:
                del self._entries[c]

    def residual(self, client_id: int) -> np.ndarray | None:
        rows = self._entries.get(int(client_id))
        return rows[-1][1].copy() if rows else None

    def save_round(self, round_: int, residuals: dict[int, np.ndarray]) -> None:
        for c, v in residuals.items():
            rows = self._entries.setdefault(int(c), [])
            rows[:] = [(r, x) for r, x in rows if r < round_]  # a re-run round replaces its own entry
            rows.append((int(round_), np.array(v, dtype=np.float32)))


class CatalogClientState:
    """Residuals as catalog objects, indexed by ``federated_client_state`` rows (run_key, client, round, key)."""

    TABLE = "federated_client_state"

    def __init__(self, cat, run_id: str, run_key: str):
        self.cat, self.run_id, self.run_key = cat, run_id, run_key
        self._index: dict[int, tuple[int, str]] = {}  # client -> (round, object key)

    def restore(self, upto_round: int) -> None:
        self._index = {}
        if upto_round <= 0:
            return
        rows = self.cat.read(self.TABLE, filter=(pc.field("run_key") == self.run_key) & (pc.field("round") <= upto_round),
                             columns=["client_id", "round", "residual_key"]).to_pylist()
        for r in rows:
            c, rnd = int(r["client_id"]), int(r["round"])
            if c not in self._index or rnd >= self._index[c][0]:
                self._index[c] = (rnd, r["residual_key"])

    def residual(self, client_id: int) -> np.ndarray | None:
        hit = self._index.get(int(client_id))
        if hit is None:
            return None
        return np.asarray(self.cat.get_arrays(hit[1])["residual"], dtype=np.float32)

    def save_round(self, round_: int, residuals: dict[int, np.ndarray]) -> None:
        if not residuals:
            return
        rows = []
        for c in sorted(residuals):
            key = self.cat.put_arrays({"residual": np.asarray(residuals[c], dtype=np.float32)}, run_id=self.run_id,
                                      description=f"error-feedback residual of client {c} after round {round_}")
            rows.append({"run_key": self.run_key, "client_id": int(c), "round": int(round_), "residual_key": key})
        self.cat.append(self.TABLE, rows, run_id=self.run_id, description=f"client residuals of round {round_}")
        for r in rows:
            self._index[r["client_id"]] = (r["round"], r["residual_key"])
