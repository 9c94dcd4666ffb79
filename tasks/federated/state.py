"""Server state, events and instructions of the federated round protocol (data only; logic in ``server.py``).

The protocol follows dask/distributed's ``WorkerState`` shape: ``server.step(state, event)`` returns a new state and
a list of instructions; the runner (``runner.py``) carries the instructions out (submits client training, arms the
round deadline, evaluates, checkpoints) and feeds what happened back as events. Nothing here does I/O or reads a
clock, so every branch (stragglers, failures, quorum misses, stale results) is testable without a cluster.

Round life cycle:  idle --Start--> training --(all results/failures | DeadlinePassed)--> evaluating
--Evaluated--> idle (round completed: CompleteRound + the next round's RunClient instructions) ... --> done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

import numpy as np

from forgeflow.tasks.federated.compression import EncodedUpdate
from forgeflow.tasks.federated.config import FederatedConfig

Phase = Literal["idle", "training", "evaluating", "done"]


# ---- events (runner -> server) ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Start:
    """Begin (or resume) the run: the server starts the round after its last completed one."""


@dataclass(frozen=True)
class ClientResult:
    """A client's answer for ``round``: its encoded update and (under error feedback) its new residual."""

    round: int
    client_id: int
    num_samples: int
    message: EncodedUpdate
    residual: np.ndarray | None
    train_loss: float | None  # None under DP: a non-private loss would leak what DP protects
    local_steps: int
    seconds: float
    clipped: bool = False  # client-level DP: the update norm exceeded the clip


@dataclass(frozen=True)
class ClientFailed:
    """The client's task raised (or its worker died): ``reason`` is the exception's one-line summary."""

    round: int
    client_id: int
    reason: str


@dataclass(frozen=True)
class DeadlinePassed:
    """The round's deadline expired; clients still pending are dropped from this round."""

    round: int


@dataclass(frozen=True)
class Evaluated:
    """Test metrics of the global model after ``round``; ``seconds`` is the round's wall time measured by the runner."""

    round: int
    accuracy: float
    loss: float
    seconds: float


Event = Start | ClientResult | ClientFailed | DeadlinePassed | Evaluated


# ---- instructions (server -> runner) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RunClient:
    """Train client ``client_id`` from ``weights`` for ``round``; ``seed`` fixes all its randomness. The runner adds
    the client's error-feedback residual from its ``ClientStateStore`` (``residual`` here is always None)."""

    round: int
    client_id: int
    seed: int
    weights: np.ndarray = field(repr=False)
    residual: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ArmDeadline:
    round: int
    seconds: float


@dataclass(frozen=True)
class Evaluate:
    round: int
    weights: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class CompleteRound:
    """Round done: record ``record`` and checkpoint ``state`` (the state after the round) before going on."""

    record: "RoundRecord"
    state: "ServerState" = field(repr=False)


@dataclass(frozen=True)
class Finish:
    weights: np.ndarray = field(repr=False)


Instruction = RunClient | ArmDeadline | Evaluate | CompleteRound | Finish


# ---- results ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundRecord:
    """One completed round. Bytes are exact payload sizes; ``epsilon`` is None without DP."""

    round: int
    status: Literal["ok", "no_quorum"]
    accuracy: float
    loss: float
    sampled: tuple[int, ...]
    participants: tuple[int, ...]
    dropped: tuple[int, ...]
    uplink_bytes: int
    downlink_bytes: int
    cum_uplink_bytes: int
    cum_downlink_bytes: int
    epsilon: float | None
    update_norm: float
    seconds: float
    failures: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class ServerState:
    """Everything the server knows. Arrays are never mutated in place: every transition builds new ones.

    ``round`` is the last completed round. ``residuals`` maps client id -> the error-feedback residual that client
    produced in the round just closed (only those: every client's residual lives in the runner's
    ``ClientStateStore``, which persists these when the round completes and hands each sampled client its own).
    ``participation[k]`` counts the rounds whose update from client k was accepted (for privacy accounting).
    ``noise`` is the resolved DP noise multiplier (None without DP).
    """

    config: FederatedConfig
    client_sizes: tuple[int, ...]
    weights: np.ndarray = field(repr=False)
    round: int = 0
    phase: Phase = "idle"
    residuals: Mapping[int, np.ndarray] = field(default_factory=dict, repr=False)
    participation: tuple[int, ...] = ()
    cum_uplink_bytes: int = 0
    cum_downlink_bytes: int = 0
    noise: float | None = None
    # the round in progress
    sampled: tuple[int, ...] = ()
    pending: frozenset[int] = frozenset()
    results: tuple[ClientResult, ...] = field(default=(), repr=False)
    failures: tuple[tuple[int, str], ...] = ()
    draft: RoundRecord | None = None

    @property
    def num_clients(self) -> int:
        return len(self.client_sizes)
