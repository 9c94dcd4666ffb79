"""The round state machine: aggregation, quorum, stale events, determinism of sampling (no torch, no cluster)."""

from dataclasses import replace

import numpy as np
import pytest

from forgeflow.tasks.federated.compression import EncodedUpdate
from forgeflow.tasks.federated.config import FederatedConfig, Privacy
from forgeflow.tasks.federated.server import aggregate, initial_state, restore, sample_clients, snapshot, step
from forgeflow.tasks.federated.state import (
    ArmDeadline, ClientFailed, ClientResult, CompleteRound, DeadlinePassed, Evaluate, Evaluated, Finish, RunClient,
    Start,
)


def result(round_, client, n, update, residual=None):
    u = np.asarray(update, dtype=np.float32)
    return ClientResult(round_, client, n, EncodedUpdate("none", u.size, u), residual, 0.0, 1, 0.0)


def test_fedavg_equals_hand_computed_weighted_mean():
    w = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    rs = [result(1, 0, 10, [1.0, 0.0, 2.0]), result(1, 1, 30, [-1.0, 4.0, 0.0]), result(1, 2, 60, [0.5, 0.5, 1.0])]
    # (10*[1,0,2] + 30*[-1,4,0] + 60*[.5,.5,1]) / 100 = [(10-30+30)/100, (0+120+30)/100, (20+0+60)/100]
    mean = np.array([0.10, 1.50, 0.80])
    new_w, got_mean = aggregate(w, rs, server_lr=0.5)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(new_w, w + 0.5 * mean, rtol=1e-6)
    # arrival order does not matter
    np.testing.assert_array_equal(aggregate(w, rs[::-1], 0.5)[0], new_w)


def cfg(**kw):
    base = dict(clients=4, fraction=0.5, rounds=2, quorum=0.5, seed=7, deadline_s=10.0)
    base.update(kw)
    return FederatedConfig(**base).validate()


def test_round_protocol_quorum_failures_and_stale_events():
    c = cfg()
    s0 = initial_state(c, [10, 20, 30, 40], np.zeros(2, np.float32))
    s, ins = step(s0, Start())
    runs = [i for i in ins if isinstance(i, RunClient)]
    assert [r.client_id for r in runs] == list(sample_clients(c, 4, 1)) and len(runs) == 2
    assert any(isinstance(i, ArmDeadline) for i in ins)
    a, b = (r.client_id for r in runs)
    s, ins = step(s, ClientFailed(1, a, "RuntimeError: boom"))
    assert ins == [] and s.phase == "training"
    s, ins = step(s, result(0, b, 5, [9.0, 9.0]))  # stale round: ignored
    assert ins == [] and b in s.pending
    s, ins = step(s, result(1, b, 20, [1.0, -1.0]))
    assert [type(i) for i in ins] == [Evaluate]  # quorum ceil(0.5*2)=1 met with one of two
    np.testing.assert_allclose(s.weights, [1.0, -1.0])
    s, ins = step(s, Evaluated(1, 0.5, 1.2, 0.1))
    done = ins[0]
    assert isinstance(done, CompleteRound)
    assert done.record.participants == (b,) and done.record.dropped == (a,)
    assert done.record.failures == ((a, "RuntimeError: boom"),)
    assert done.record.uplink_bytes == 8 and done.record.downlink_bytes == 2 * 8
    assert s.participation[b] == 1 and s.participation[a] == 0
    # round 2: everyone misses the deadline -> no quorum, model unchanged
    s, _ = step(s, DeadlinePassed(2))
    assert s.draft.status == "no_quorum" and s.draft.dropped == tuple(sample_clients(c, 4, 2))
    np.testing.assert_allclose(s.weights, [1.0, -1.0])
    s, ins = step(s, Evaluated(2, 0.5, 1.2, 0.1))
    assert isinstance(ins[0], CompleteRound) and isinstance(ins[-1], Finish) and s.phase == "done"


def test_late_result_after_deadline_is_ignored():
    c = cfg(quorum=1.0)
    s, ins = step(initial_state(c, [1, 1, 1, 1], np.zeros(1, np.float32)), Start())
    first, second = (i.client_id for i in ins if isinstance(i, RunClient))
    s, _ = step(s, result(1, first, 1, [2.0]))
    s, ins = step(s, DeadlinePassed(1))
    assert s.draft.status == "no_quorum"  # quorum 1.0 needs both
    s2, ins2 = step(s, result(1, second, 1, [5.0]))
    assert s2 is s and ins2 == []


def test_sampling_is_seeded_per_round_and_poisson_under_client_dp():
    c = cfg(clients=50, fraction=0.2)
    assert sample_clients(c, 50, 3) == sample_clients(c, 50, 3) and len(sample_clients(c, 50, 3)) == 10
    assert sample_clients(c, 50, 3) != sample_clients(c, 50, 4)
    dp = replace(c, privacy=Privacy(mode="client", clip=1.0, noise=1.0))
    sizes = [len(sample_clients(dp, 50, r)) for r in range(1, 200)]
    assert len(set(sizes)) > 3 and abs(np.mean(sizes) - 10) < 1.5  # Binomial(50, 0.2)


def test_dp_fedavg_adds_noise_and_divides_by_expected_count():
    c = cfg(clients=4, fraction=0.5, quorum=0.1, privacy=Privacy(mode="client", clip=1.0, noise=1e-9))
    s = initial_state(c, [1, 1, 1, 1], np.zeros(3, np.float32), noise=1e-9)
    s, ins = step(s, Start())
    clients = [i.client_id for i in ins if isinstance(i, RunClient)]
    for k in clients:
        s, ins = step(s, result(1, k, 100 * (k + 1), [0.6, 0.0, -0.8]))
    # unweighted sum / (q N) = len(clients) * u / 2, noise negligible
    np.testing.assert_allclose(s.weights, len(clients) * np.array([0.6, 0.0, -0.8]) / 2.0, atol=1e-6)
    assert s.draft.epsilon is not None and s.draft.epsilon > 0


def test_snapshot_restore_round_trip():
    c = cfg()
    s = initial_state(c, [10, 20, 30, 40], np.arange(3, dtype=np.float32))
    s = replace(s, round=1, residuals={2: np.ones(3, np.float32)}, participation=(0, 1, 1, 0),
                cum_uplink_bytes=24, cum_downlink_bytes=48)
    arrays, meta = snapshot(s)
    assert set(arrays) == {"weights"}  # residuals are per-client state (ClientStateStore), not in the checkpoint
    r = restore(c, [10, 20, 30, 40], arrays, meta)
    np.testing.assert_array_equal(r.weights, s.weights)
    assert (r.round, r.participation, r.cum_uplink_bytes) == (1, (0, 1, 1, 0), 24)
    with pytest.raises(ValueError):
        snapshot(replace(s, phase="training"))
