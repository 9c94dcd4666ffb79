"""Carry out the server's instructions: client training through an ``executor``, deadlines, evaluation, checkpoints.

``executor`` follows ``tasks.dask_fanout``'s contract: a ``distributed.Client`` (one future per sampled client per
round, on any worker), a ``concurrent.futures`` executor, or ``SERIAL`` (run inline, in order). A future that raises becomes ``ClientFailed``; a
round deadline (``config.deadline_s``) turns the clients still running into drops (their futures are cancelled).

Checkpoints: after each completed round the runner hands the round record and the state snapshot (weights,
error-feedback residuals, participation counts, cumulative bytes) to ``store``. Started again with the same
configuration and data (the same ``run_key``), it restores the last completed round and goes on from there; because
every random draw is seeded by (seed, round, client), the resumed run ends at the same weights as an uninterrupted one.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

import numpy as np

from forgeflow.tasks.dask_fanout import SERIAL, as_executor
from forgeflow.tasks.federated.client import LocalTraining, check_model_for_dp, train_client
from forgeflow.tasks.federated.client_state import ClientStateStore, MemoryClientState
from forgeflow.tasks.federated.config import FederatedConfig, FederatedConfigError
from forgeflow.tasks.federated.data import FederatedDataset
from forgeflow.tasks.federated.model_state import evaluate, flatten_state
from forgeflow.tasks.federated.model_state import initial_weights as _initial_weights
from forgeflow.tasks.federated.privacy import (
    CLIENT_ASSUMPTION, RECORD_ASSUMPTION, ClientLevelAccountant, calibrate_noise, calibrate_record_noise,
    compression_assumption,
)
from forgeflow.tasks.federated.server import initial_state, restore, snapshot, step
from forgeflow.tasks.federated.state import (
    ArmDeadline, ClientFailed, ClientResult, CompleteRound, DeadlinePassed, Evaluate, Evaluated, Finish, RoundRecord,
    RunClient, ServerState, Start,
)


class CheckpointStore(Protocol):
    """Where completed rounds go. ``latest`` returns (arrays, meta, records so far) or None."""

    def latest(self, run_key: str) -> tuple[dict[str, np.ndarray], dict, list[RoundRecord]] | None: ...

    def save(self, run_key: str, record: RoundRecord, arrays: dict[str, np.ndarray], meta: dict) -> None: ...

    def client_state(self, run_key: str) -> ClientStateStore: ...


class MemoryCheckpoints:
    """A CheckpointStore in a dict (tests, and runs that need no persistence)."""

    def __init__(self) -> None:
        self.saved: dict[str, list[tuple[RoundRecord, dict, dict]]] = {}
        self._clients: dict[str, MemoryClientState] = {}

    def client_state(self, run_key: str) -> MemoryClientState:
        return self._clients.setdefault(run_key, MemoryClientState())

    def latest(self, run_key):
        rows = self.saved.get(run_key)
        if not rows:
            return None
        _, arrays, meta = rows[-1]
        return {k: v.copy() for k, v in arrays.items()}, dict(meta), [r for r, _, _ in rows]

    def save(self, run_key, record, arrays, meta):
        self.saved.setdefault(run_key, []).append((record, {k: np.array(v) for k, v in arrays.items()}, dict(meta)))


@dataclass(frozen=True)
class FederatedResult:
    """A finished run: every round's record, final weights, and the privacy statement when DP was on."""

    run_key: str
    config: FederatedConfig
    records: tuple[RoundRecord, ...]
    weights: np.ndarray = field(repr=False)
    noise: float | None
    resumed_from_round: int
    privacy_assumption: str | None

    @property
    def final(self) -> RoundRecord:
        return self.records[-1]

    def summary(self) -> dict[str, Any]:
        last = self.final
        return {
            "run_key": self.run_key, "rounds": last.round, "accuracy": last.accuracy, "loss": last.loss,
            "uplink_bytes": last.cum_uplink_bytes, "downlink_bytes": last.cum_downlink_bytes,
            "epsilon": last.epsilon, "delta": self.config.privacy.delta if self.noise is not None else None,
            "noise_multiplier": self.noise, "dp": self.config.privacy.mode, "compression": self.config.compression.label(),
            "best_accuracy": max(r.accuracy for r in self.records), "resumed_from_round": self.resumed_from_round,
            "dropped": sum(len(r.dropped) for r in self.records),
            "seconds_per_round": float(np.mean([r.seconds for r in self.records])),
            "privacy_assumption": self.privacy_assumption,
        }


def resolve_noise(config: FederatedConfig, client_sizes) -> float | None:
    """The DP noise multiplier: given, or the smallest reaching ``target_epsilon`` after ``rounds`` rounds.

    Record-level calibration assumes the worst case, every client in every round.
    """
    p = config.privacy
    if p.mode == "none":
        return None
    if p.noise is not None:
        return float(p.noise)
    sizes = tuple(int(n) for n in client_sizes)
    try:
        if p.mode == "record":
            return calibrate_record_noise(sizes, config.batch_size, config.local_epochs, config.rounds, p.delta,
                                          p.target_epsilon)
        return calibrate_noise(lambda z: ClientLevelAccountant(config.fraction, z, p.delta).epsilon(config.rounds),
                               p.target_epsilon)
    except ValueError as exc:
        raise FederatedConfigError(f"--dp-epsilon {p.target_epsilon}: {exc}") from None


def _failure_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def run_federated(config: FederatedConfig, dataset: FederatedDataset, executor: Any = SERIAL,
                  store: CheckpointStore | None = None, run_key: str | None = None,
                  on_round: Callable[[RoundRecord], None] | None = None,
                  client_fn: Callable[..., ClientResult] = train_client,
                  stop_after_round: int | None = None, model_factory: Callable[[], Any] | None = None,
                  initial_weights: np.ndarray | None = None) -> FederatedResult:
    """Run (or resume) a federated training; see the module docstring. ``stop_after_round`` ends early (tests).

    ``model_factory`` (a picklable callable, e.g. a ``functools.partial``) builds the model on the server and on
    every client in place of ``config.model``, which then only labels the run; ``initial_weights`` (a flat state
    vector) starts from given weights instead of a fresh initialisation (fine-tuning)."""
    config.validate()
    executor = as_executor(executor)
    if dataset.num_clients != config.clients:
        raise FederatedConfigError(f"the dataset is split over {dataset.num_clients} clients, the config asks "
                                   f"for {config.clients}")
    if model_factory is None:
        check_model_for_dp(config.model, config.privacy.mode)
    sizes = tuple(int(n) for n in dataset.client_sizes)
    key = run_key or config.run_key(dataset.dataset_id)
    prior = store.latest(key) if store is not None else None
    records: list[RoundRecord] = []
    if prior is not None:
        arrays, meta, records = prior
        state: ServerState = restore(config, sizes, arrays, meta)
        records = list(records)
    else:
        noise = resolve_noise(config, sizes)
        start = (initial_weights if initial_weights is not None else
                 _initial_weights(config.model, config.seed) if model_factory is None else
                 flatten_state(model_factory()))
        state = initial_state(config, sizes, start, noise)
    resumed_from = state.round
    training = LocalTraining.from_config(config, state.noise)
    if model_factory is not None:
        training = replace(training, factory=model_factory)
    clients: ClientStateStore = store.client_state(key) if store is not None else MemoryClientState()
    clients.restore(state.round)
    legacy = {int(k.split("/", 1)[1]): np.asarray(v, dtype=np.float32)  # checkpoints written before client stores
              for k, v in (prior[0] if prior is not None else {}).items() if k.startswith("residual/")}

    arrivals = _Arrivals()
    deadline: tuple[int, float] | None = None
    started: dict[int, float] = {}
    final_weights: np.ndarray | None = None
    state, first = step(state, Start())
    todo = deque(_largest_first(first, sizes))
    while final_weights is None:
        while todo:
            ins = todo.popleft()
            event = None
            if isinstance(ins, RunClient):
                started.setdefault(ins.round, time.perf_counter())
                x, y = dataset.client_arrays(ins.client_id)  # only the sampled clients' rows: O(m) per round
                residual = clients.residual(ins.client_id)
                if residual is None:
                    residual = legacy.get(ins.client_id)
                arrivals.add((ins.round, ins.client_id), executor.submit(
                    client_fn, ins.round, ins.client_id, ins.seed, ins.weights, residual, x, y, training))
            elif isinstance(ins, ArmDeadline):
                deadline = (ins.round, time.perf_counter() + ins.seconds)
            elif isinstance(ins, Evaluate):
                arrivals.cancel_round(ins.round)  # stragglers of a closed round
                deadline = None
                acc, loss = evaluate(model_factory or config.model, ins.weights, dataset.x_test, dataset.y_test)
                t0 = started.pop(ins.round, time.perf_counter())
                event = Evaluated(ins.round, acc, loss, time.perf_counter() - t0)
            elif isinstance(ins, CompleteRound):
                arrays, meta = snapshot(ins.state)
                # the round's residuals are durable before its checkpoint (see client_state.py)
                clients.save_round(ins.record.round, dict(ins.state.residuals))
                for c in ins.state.residuals:
                    legacy.pop(c, None)
                if store is not None:
                    store.save(key, ins.record, arrays, meta)
                records.append(ins.record)
                if on_round is not None:
                    on_round(ins.record)
                if stop_after_round is not None and ins.record.round >= stop_after_round:
                    final_weights = ins.state.weights
                    todo.clear()
                    break
            elif isinstance(ins, Finish):
                final_weights = ins.weights
            if event is not None:
                state, more = step(state, event)
                todo.extend(_largest_first(more, sizes))
        if final_weights is not None:
            break
        state, more = step(state, arrivals.next_event(deadline))
        todo.extend(_largest_first(more, sizes))
    arrivals.cancel_all()
    assumption = {"record": RECORD_ASSUMPTION, "client": CLIENT_ASSUMPTION}.get(config.privacy.mode)
    if assumption is not None:
        comp = config.compression
        assumption += "; " + compression_assumption(comp.kind, comp.shared_mask, config.privacy.mode)
    return FederatedResult(key, config, tuple(records), final_weights, state.noise, resumed_from, assumption)


def _largest_first(instructions: list, sizes: tuple[int, ...]) -> list:
    """``instructions`` with the client tasks in decreasing order of the clients' data sizes, in the slots the client
    tasks held (every other instruction keeps its place: a round's checkpoint still precedes the next round's tasks).

    Dask queues tasks at the scheduler and hands them to workers as threads free up, so submitting the longest
    clients first is the LPT rule: the round ends when the last client does, and a large client started last would
    leave the other workers idle. The aggregate is sorted by client id, so the order changes no result."""
    slots = [k for k, i in enumerate(instructions) if isinstance(i, RunClient)]
    if len(slots) < 2:
        return list(instructions)
    out = list(instructions)
    ordered = sorted((instructions[k] for k in slots), key=lambda i: (-sizes[i.client_id], i.client_id))
    for k, ins in zip(slots, ordered):
        out[k] = ins
    return out


class _Arrivals:
    """Client futures keyed by (round, client), and a queue their done-callbacks fill: the server blocks until one
    finishes or the deadline passes, instead of polling (a poll adds up to its period to every round's critical path
    and wakes the flow process while the workers need the cores)."""

    def __init__(self) -> None:
        self.futures: dict[tuple[int, int], Any] = {}
        self._done: "queue.SimpleQueue[tuple[int, int]]" = queue.SimpleQueue()

    def add(self, key: tuple[int, int], fut: Any) -> None:
        self.futures[key] = fut
        fut.add_done_callback(lambda _f, key=key: self._done.put(key))

    def cancel_round(self, round_: int) -> None:
        for k in [k for k in self.futures if k[0] == round_]:
            self.futures.pop(k).cancel()

    def cancel_all(self) -> None:
        for fut in self.futures.values():
            fut.cancel()
        self.futures.clear()

    def next_event(self, deadline: tuple[int, float] | None):
        """Block until a client future finishes (-> result/failure event) or the deadline passes."""
        while True:
            if not self.futures:
                raise RuntimeError("the server waits for clients but no client task is running")
            wait = None if deadline is None else max(0.0, deadline[1] - time.perf_counter())
            try:
                k = self._done.get(timeout=wait)
            except queue.Empty:
                return DeadlinePassed(deadline[0])
            fut = self.futures.pop(k, None)
            if fut is None:  # cancelled with its round, or already taken
                continue
            try:
                return fut.result()
            except Exception as exc:  # noqa: BLE001 - includes a worker dying under the task
                return ClientFailed(k[0], k[1], _failure_reason(exc))
