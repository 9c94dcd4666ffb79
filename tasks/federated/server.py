"""The federated server as a pure state machine: ``step(state, event) -> (state, instructions)``.

Rules:
- Sampling. Without client-level DP: ``max(1, round(fraction N))`` clients drawn uniformly without replacement.
  With client-level DP: each client independently with probability ``fraction`` (Poisson sampling, which the
  accountant assumes). Draws use ``default_rng([seed, round])``, so a resumed run samples exactly as an
  uninterrupted one.
- Quorum. A round needs accepted results from at least ``ceil(quorum * sampled)`` clients (and at least one);
  otherwise it completes with status ``no_quorum`` and the model is left unchanged. Clients that raised or were still
  pending at the deadline are ``dropped``; results for another round or from a client not pending are ignored.
- Aggregation. FedAvg: ``w += server_lr * sum_k n_k u_k / sum_k n_k`` over accepted updates ``u_k`` (decoded).
  DP-FedAvg: ``w += server_lr * (sum_k u_k + N(0, (z C)^2 I)) / (fraction N)``, the fixed denominator of
  McMahan et al. (2018), with ``u_k`` already clipped to norm C by the client. Updates are summed in client-id order
  so the result does not depend on arrival order.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np

from forgeflow.tasks.federated.compression import decode, dense_bytes, shared_mask
from forgeflow.tasks.federated.config import FederatedConfig
from forgeflow.tasks.federated.privacy import ClientLevelAccountant, RecordLevelAccountant
from forgeflow.tasks.federated.state import (
    ArmDeadline, ClientFailed, ClientResult, CompleteRound, DeadlinePassed, Evaluate, Evaluated, Event, Finish,
    Instruction, RoundRecord, RunClient, ServerState, Start,
)


def client_seed(seed: int, round_: int, client_id: int) -> int:
    """A 63-bit seed for one client's work in one round, independent of which worker runs it."""
    return int(np.random.SeedSequence([seed, round_, client_id, 0xC11E]).generate_state(2, np.uint32)
               .astype(np.uint64) @ np.array([1 << 31, 1], dtype=np.uint64))


def initial_state(config: FederatedConfig, client_sizes, weights: np.ndarray, noise: float | None = None
                  ) -> ServerState:
    sizes = tuple(int(n) for n in client_sizes)
    return ServerState(config=config, client_sizes=sizes, weights=np.asarray(weights, dtype=np.float32).copy(),
                       participation=(0,) * len(sizes), noise=noise)


def sample_clients(config: FederatedConfig, num_clients: int, round_: int) -> tuple[int, ...]:
    rng = np.random.default_rng([config.seed, round_, 0x5A3])
    if config.privacy.mode == "client":
        return tuple(int(c) for c in np.flatnonzero(rng.random(num_clients) < config.fraction))
    m = min(num_clients, config.clients_per_round)
    return tuple(sorted(int(c) for c in rng.choice(num_clients, size=m, replace=False)))


def quorum_size(config: FederatedConfig, sampled: int) -> int:
    return max(1, math.ceil(config.quorum * sampled))


def aggregate(weights: np.ndarray, results: list[ClientResult], server_lr: float) -> tuple[np.ndarray, np.ndarray]:
    """FedAvg: the sample-weighted mean of the decoded updates, applied with ``server_lr``. Returns (w', mean)."""
    results = sorted(results, key=lambda r: r.client_id)
    total = float(sum(r.num_samples for r in results))
    mean = np.zeros_like(weights, dtype=np.float64)
    for r in results:
        mean += (r.num_samples / total) * decode(r.message).astype(np.float64)
    return (weights.astype(np.float64) + server_lr * mean).astype(np.float32), mean.astype(np.float32)


def aggregate_dp(weights: np.ndarray, results: list[ClientResult], server_lr: float, clip: float, noise: float,
                 expected_clients: float, rng: np.random.Generator, mask: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """DP-FedAvg: (sum of clipped updates + N(0, (noise clip)^2 I)) / expected_clients, applied with ``server_lr``.

    With a shared random-k ``mask`` (drawn from the run seed and the round, never from data) every update is zero off
    the mask whatever the data, so the Gaussian noise goes on the mask's coordinates only: the released vector is
    the k-dimensional Gaussian mechanism with the same sensitivity (the clip) plus data-independent zeros, the same
    (epsilon, delta), with k/d of the noise energy (the sparsified model perturbation of Hu et al., Fed-SMP)."""
    total = np.zeros_like(weights, dtype=np.float64)
    for r in sorted(results, key=lambda r: r.client_id):
        total += decode(r.message).astype(np.float64)
    if mask is None:
        total += rng.normal(0.0, noise * clip, size=weights.shape)
    else:
        total[mask] += rng.normal(0.0, noise * clip, size=mask.shape)
    mean = total / expected_clients
    return (weights.astype(np.float64) + server_lr * mean).astype(np.float32), mean.astype(np.float32)


def epsilon_after(state: ServerState, rounds_done: int, participation: tuple[int, ...]) -> float | None:
    cfg = state.config
    if cfg.privacy.mode == "none":
        return None
    if cfg.privacy.mode == "client":
        return ClientLevelAccountant(cfg.fraction, state.noise, cfg.privacy.delta).epsilon(rounds_done)
    acc = RecordLevelAccountant(state.client_sizes, cfg.batch_size, cfg.local_epochs, state.noise, cfg.privacy.delta)
    return acc.epsilon(participation)


def _begin_round(state: ServerState) -> tuple[ServerState, list[Instruction]]:
    cfg = state.config
    if state.round >= cfg.rounds:
        return replace(state, phase="done"), [Finish(state.weights)]
    r = state.round + 1
    sampled = sample_clients(cfg, state.num_clients, r)
    state = replace(state, phase="training", sampled=sampled, pending=frozenset(sampled), results=(), failures=(),
                    draft=None)
    out: list[Instruction] = [
        RunClient(r, c, client_seed(cfg.seed, r, c), state.weights) for c in sampled]
    if cfg.deadline_s is not None:
        out.append(ArmDeadline(r, cfg.deadline_s))
    if not sampled:  # possible under Poisson sampling: nothing to wait for
        return _close_round(state)
    return state, out


def _close_round(state: ServerState) -> tuple[ServerState, list[Instruction]]:
    """All sampled clients answered, failed or timed out: aggregate (if quorum) and ask for an evaluation."""
    cfg = state.config
    r = state.round + 1
    accepted = sorted(state.results, key=lambda x: x.client_id)
    dropped = tuple(sorted({c for c, _ in state.failures} | set(state.pending)))
    failures = tuple(sorted(state.failures)) + tuple((c, "deadline") for c in sorted(state.pending))
    ok = bool(state.sampled) and len(accepted) >= quorum_size(cfg, len(state.sampled))
    uplink = sum(x.message.nbytes for x in accepted)
    downlink = dense_bytes(state.weights.size) * len(state.sampled)
    participation = list(state.participation)
    residuals: dict[int, np.ndarray] = {}  # only this round's new residuals: the runner persists them per client
    weights, norm = state.weights, 0.0
    if ok:
        if cfg.privacy.mode == "client":
            rng = np.random.default_rng([cfg.seed, r, 0xD9])
            weights, mean = aggregate_dp(state.weights, accepted, cfg.server_lr, cfg.privacy.clip, state.noise,
                                         cfg.fraction * state.num_clients, rng,
                                         mask=shared_mask(cfg.compression, state.weights.size, cfg.seed, r))
        else:
            weights, mean = aggregate(state.weights, accepted, cfg.server_lr)
        norm = float(np.linalg.norm(mean))
        for x in accepted:
            participation[x.client_id] += 1
            if x.residual is not None:
                residuals[x.client_id] = x.residual
    participation_t = tuple(participation)
    # Client-level DP composes every round the mechanism could have run (conservative for no_quorum rounds).
    eps = epsilon_after(state, r, participation_t)
    draft = RoundRecord(
        round=r, status="ok" if ok else "no_quorum", accuracy=float("nan"), loss=float("nan"), sampled=state.sampled,
        participants=tuple(x.client_id for x in accepted), dropped=dropped, uplink_bytes=int(uplink),
        downlink_bytes=int(downlink), cum_uplink_bytes=state.cum_uplink_bytes + int(uplink),
        cum_downlink_bytes=state.cum_downlink_bytes + int(downlink), epsilon=eps, update_norm=norm, seconds=0.0,
        failures=failures)
    state = replace(state, phase="evaluating", weights=weights, residuals=residuals, participation=participation_t,
                    pending=frozenset(), draft=draft)
    return state, [Evaluate(r, weights)]


def step(state: ServerState, event: Event) -> tuple[ServerState, list[Instruction]]:
    """Apply one event; return the next state and what the runner must do now."""
    if isinstance(event, Start):
        if state.phase in ("training", "evaluating"):
            return state, []
        return _begin_round(state)
    current = state.round + 1
    if isinstance(event, ClientResult):
        if state.phase != "training" or event.round != current or event.client_id not in state.pending:
            return state, []  # stale, duplicate or late: ignored
        state = replace(state, pending=state.pending - {event.client_id}, results=state.results + (event,))
        return _close_round(state) if not state.pending else (state, [])
    if isinstance(event, ClientFailed):
        if state.phase != "training" or event.round != current or event.client_id not in state.pending:
            return state, []
        state = replace(state, pending=state.pending - {event.client_id},
                        failures=state.failures + ((event.client_id, event.reason),))
        return _close_round(state) if not state.pending else (state, [])
    if isinstance(event, DeadlinePassed):
        if state.phase != "training" or event.round != current:
            return state, []
        return _close_round(state)
    if isinstance(event, Evaluated):
        if state.phase != "evaluating" or event.round != current:
            return state, []
        record = replace(state.draft, accuracy=float(event.accuracy), loss=float(event.loss),
                         seconds=float(event.seconds))
        state = replace(state, phase="idle", round=current, cum_uplink_bytes=record.cum_uplink_bytes,
                        cum_downlink_bytes=record.cum_downlink_bytes, sampled=(), results=(), failures=(), draft=None)
        nxt_state, nxt = _begin_round(state)
        return nxt_state, [CompleteRound(record, state), *nxt]
    raise TypeError(f"unknown event {event!r}")


# ---- checkpoints -----------------------------------------------------------------------------------------------

def snapshot(state: ServerState) -> tuple[dict[str, np.ndarray], dict]:
    """A completed-round state as (arrays, JSON metadata) for the catalog. Only idle/done states are checkpointed.

    Error-feedback residuals are not part of it: they are per-client state, kept in a ``ClientStateStore`` and
    written per round for the participants only, so a checkpoint costs O(model), not O(clients x model)."""
    if state.phase not in ("idle", "done"):
        raise ValueError(f"only a state between rounds can be checkpointed, not one in phase {state.phase!r}")
    arrays = {"weights": state.weights}
    meta = {"round": state.round, "participation": list(state.participation), "noise": state.noise,
            "cum_uplink_bytes": state.cum_uplink_bytes, "cum_downlink_bytes": state.cum_downlink_bytes}
    return arrays, meta


def restore(config: FederatedConfig, client_sizes, arrays: dict[str, np.ndarray], meta: dict | str) -> ServerState:
    meta = json.loads(meta) if isinstance(meta, str) else meta
    return ServerState(config=config, client_sizes=tuple(int(n) for n in client_sizes),
                       weights=np.asarray(arrays["weights"], dtype=np.float32), round=int(meta["round"]),
                       participation=tuple(int(p) for p in meta["participation"]),
                       cum_uplink_bytes=int(meta["cum_uplink_bytes"]),
                       cum_downlink_bytes=int(meta["cum_downlink_bytes"]), noise=meta["noise"])
