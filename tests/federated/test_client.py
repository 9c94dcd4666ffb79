"""Local training: determinism per seed, DP-SGD's clipped step against a hand-computed one, client-level clipping."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from forgeflow.tasks.federated.client import LocalTraining, check_model_for_dp, train_client
from forgeflow.tasks.federated.compression import decode
from forgeflow.tasks.federated.config import Compression, FederatedConfigError
from forgeflow.tasks.federated.model_state import build_model, flatten_state, initial_weights, load_state

torch.set_num_threads(1)
MLP = "forgeflow:digits_mlp"


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, n)


def training(**kw):
    base = dict(model=MLP, local_epochs=1, batch_size=8, lr=0.1, prox_mu=0.0, compression=Compression(),
                dp_mode="none", clip=1.0, noise=None)
    base.update(kw)
    return LocalTraining(**base)


def test_same_seed_same_update_different_seed_different_update():
    x, y = data()
    w = initial_weights(MLP, 0)
    a = train_client(1, 0, 42, w, None, x, y, training())
    b = train_client(1, 0, 42, w, None, x, y, training())
    c = train_client(1, 0, 43, w, None, x, y, training())
    np.testing.assert_array_equal(decode(a.message), decode(b.message))
    assert not np.array_equal(decode(a.message), decode(c.message))
    assert a.local_steps == 3 and a.num_samples == 24


def test_dp_sgd_step_equals_hand_computed_clipped_mean_without_noise():
    x, y = data(n=6)
    w = initial_weights(MLP, 1)
    clip, lr = 0.5, 0.2
    res = train_client(1, 0, 3, w, None, x, y, training(dp_mode="record", clip=clip, noise=0.0, batch_size=6, lr=lr))
    model = load_state(build_model(MLP), w)
    total = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(6):  # one example at a time: gradient, clip to `clip`, accumulate
        model.zero_grad()
        F.cross_entropy(model(torch.from_numpy(x[i:i + 1])), torch.from_numpy(y[i:i + 1])).backward()
        g = [p.grad.clone() for p in model.parameters()]
        norm = torch.sqrt(sum((t ** 2).sum() for t in g))
        for acc, t in zip(total, g):
            acc += t * min(1.0, clip / float(norm))
    expected = torch.cat([(-lr * t / 6).reshape(-1) for t in total]).numpy()
    assert res.local_steps == 1 and res.train_loss is None
    np.testing.assert_allclose(decode(res.message), expected, rtol=1e-4, atol=1e-7)


def test_client_level_clip_bounds_the_sent_update_even_with_error_feedback():
    x, y = data()
    w = initial_weights(MLP, 0)
    residual = np.full(w.size, 0.05, np.float32)
    t = training(dp_mode="client", clip=0.1, noise=1.0, lr=0.5, compression=Compression("topk", 0.1))
    res = train_client(1, 0, 5, w, residual, x, y, t)
    assert np.linalg.norm(decode(res.message)) <= 0.1 * (1 + 1e-5) and res.clipped


def test_fedprox_pulls_towards_global_weights():
    x, y = data()
    w = initial_weights(MLP, 0)
    free = np.linalg.norm(decode(train_client(1, 0, 9, w, None, x, y, training(lr=0.5)).message))
    prox = np.linalg.norm(decode(train_client(1, 0, 9, w, None, x, y, training(lr=0.5, prox_mu=1.0)).message))
    assert prox < free


def test_record_dp_refuses_batch_norm_models():
    with pytest.raises(FederatedConfigError, match="batch-norm"):
        check_model_for_dp("forgeflow:digits_cnn", "record")
    check_model_for_dp(MLP, "record")
    assert flatten_state(build_model(MLP)).dtype == np.float32


def test_full_batch_dp_gd_with_the_per_example_normalised_linear_model():
    spec = "forgeflow.tasks.federated.models:digits_linear_ln"
    check_model_for_dp(spec, "record")  # no batch norm: accepted
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == 650
    x, y = data(n=5)
    xt = torch.from_numpy(x)
    with torch.no_grad():  # each example is standardised on its own: affine pixel changes do not move the logits
        np.testing.assert_allclose(model(2.0 * xt + 0.1).numpy(), model(xt).numpy(), rtol=1e-4, atol=1e-5)
    w = initial_weights(spec, 0)
    res = train_client(1, 0, 3, w, None, x, y, training(model=spec, dp_mode="record", noise=1.0, batch_size=4096,
                                                        local_epochs=2))
    assert res.local_steps == 2  # batch >= n: one noisy full-batch step per local epoch
    assert np.isfinite(decode(res.message)).all()
