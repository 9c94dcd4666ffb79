"""Sparsified DP: shared random-k masks, noise only where the mask is, and top-k refused under client-level DP."""

import numpy as np
import pytest

from forgeflow.tasks.federated.compression import decode, shared_mask
from forgeflow.tasks.federated.config import Compression, FederatedConfig, FederatedConfigError, Privacy
from forgeflow.tasks.federated.data import build_dataset
from forgeflow.tasks.federated.runner import run_federated
from forgeflow.tasks.federated.server import aggregate_dp


def test_shared_mask_clients_send_the_same_coordinates_and_the_noise_stays_on_them():
    cfg = FederatedConfig(model="forgeflow:digits_mlp", clients=4, alpha=None, rounds=1, fraction=1.0, local_epochs=1,
                          batch_size=32, lr=0.3, compression=Compression.parse("randk:0.05:shared"), seed=2,
                          privacy=Privacy(mode="client", clip=0.5, noise=2.0))
    assert cfg.compression.shared_mask and cfg.compression.label() == "randk:0.05:shared"
    ds = build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)
    res = run_federated(cfg, ds)
    from forgeflow.tasks.federated.model_state import initial_weights

    start = initial_weights(cfg.model, cfg.seed)
    mask = shared_mask(cfg.compression, start.size, cfg.seed, 1)
    moved = np.flatnonzero(res.weights != start)
    assert len(moved) > 0 and set(moved) <= set(mask.tolist())  # nothing off the mask changed, noise included
    assert "independent of the data" in res.privacy_assumption


def test_dense_noise_touches_every_coordinate_without_a_mask():
    rng = np.random.default_rng(0)
    w = np.zeros(50, np.float32)
    out, _ = aggregate_dp(w, [], 1.0, 1.0, 1.0, 1.0, rng)
    assert np.count_nonzero(out) == 50
    mask = np.array([3, 7, 11])
    out, _ = aggregate_dp(w, [], 1.0, 1.0, 1.0, 1.0, np.random.default_rng(0), mask=mask)
    assert set(np.flatnonzero(out)) == {3, 7, 11}


def test_topk_under_client_level_dp_is_refused_but_allowed_under_record_level():
    base = dict(model="forgeflow:digits_mlp", compression=Compression.parse("topk:0.01"))
    with pytest.raises(FederatedConfigError, match="top-k"):
        FederatedConfig(**base, privacy=Privacy(mode="client", clip=1.0, noise=1.0)).validate()
    FederatedConfig(**base, privacy=Privacy(mode="record", clip=1.0, noise=1.0)).validate()


def test_independent_masks_differ_between_clients():
    comp = Compression.parse("randk:0.1")
    assert not comp.shared_mask and shared_mask(comp, 100, 0, 1) is None
    from forgeflow.tasks.federated.compression import encode

    a, _ = encode(np.arange(100, dtype=np.float32), comp, None, 11)
    b, _ = encode(np.arange(100, dtype=np.float32), comp, None, 12)
    assert not np.array_equal(np.flatnonzero(decode(a)), np.flatnonzero(decode(b)))


def _record_cfg(comp: str, **kw):
    base = dict(model="forgeflow.tasks.federated.models:digits_linear_ln", clients=3, alpha=None, rounds=1,
                fraction=1.0, local_epochs=2, batch_size=4096, lr=1.0, compression=Compression.parse(comp), seed=5,
                privacy=Privacy(mode="record", clip=1.0, noise=1.5))
    base.update(kw)
    return FederatedConfig(**base)


def test_record_dp_under_a_shared_mask_trains_only_the_masked_coordinates_and_drops_nothing():
    """Sparsified DP-SGD: gradients and noise live on the round's mask, so every client's update is exactly its
    message (nothing is left for error feedback) and the other coordinates do not move at all."""
    from forgeflow.tasks.federated.client import LocalTraining, train_client
    from forgeflow.tasks.federated.model_state import initial_weights

    cfg = _record_cfg("randk:0.1:shared")
    ds = build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)
    w = initial_weights(cfg.model, cfg.seed)
    mask = shared_mask(cfg.compression, w.size, cfg.seed, 1)
    res = train_client(1, 0, 123, w, None, *ds.client_arrays(0), LocalTraining.from_config(cfg, 1.5))
    sent = decode(res.message)
    assert set(np.flatnonzero(sent)) == set(mask.tolist())  # noise reaches every masked coordinate, nothing else
    assert res.residual is not None and not np.any(res.residual)  # no dropped mass, no noise carried in a residual
    run = run_federated(cfg, ds)
    assert set(np.flatnonzero(run.weights != w)) <= set(mask.tolist())
    assert "subspace" in run.privacy_assumption and "independently of the data" in run.privacy_assumption


def test_masked_dp_sgd_clips_in_the_subspace_so_the_signal_keeps_the_whole_clip():
    """Each example's gradient is masked before it is clipped: with noise ~0 and one step, the masked step's norm is
    the clip C times lr / n for every example whose masked gradient exceeds C (sensitivity C in the subspace), while
    the dense step's masked part is a fraction of that."""
    from forgeflow.tasks.federated.client import LocalTraining, train_client
    from forgeflow.tasks.federated.model_state import initial_weights

    cfg = _record_cfg("randk:0.1:shared", local_epochs=1, privacy=Privacy(mode="record", clip=1e-3, noise=1e-9))
    ds = build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)
    x, y = ds.client_arrays(1)
    w = initial_weights(cfg.model, cfg.seed)
    mask = shared_mask(cfg.compression, w.size, cfg.seed, 1)
    masked = decode(train_client(1, 1, 7, w, None, x, y, LocalTraining.from_config(cfg, 1e-9)).message)
    dense_cfg = _record_cfg("none", local_epochs=1, privacy=Privacy(mode="record", clip=1e-3, noise=1e-9))
    dense = decode(train_client(1, 1, 7, w, None, x, y, LocalTraining.from_config(dense_cfg, 1e-9)).message)
    # every example is clipped at C = 1e-3, so each step is lr * (sum of n unit-ish vectors of norm C) / n <= lr * C
    assert np.linalg.norm(masked) <= cfg.lr * 1e-3 * (1 + 1e-4)
    assert np.linalg.norm(masked) > 1.5 * np.linalg.norm(dense[mask])
