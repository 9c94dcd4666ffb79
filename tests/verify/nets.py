"""Small networks for the verification tests: trained digits models and tiny hand-built integer networks with
power-of-two scales, whose pre-activations land exactly on half-integers and whose logits tie (deliberate ties)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from forgeflow.tasks.verify.intnet import Layer, QNetwork, Requant


def trained(model: nn.Module, bits: int = 8, act_bits: int = 8, epochs: int = 3):
    from forgeflow.tasks.models.digits import load_digits_split, train_classifier
    from forgeflow.tasks.quantize.apply import quantize_model
    from forgeflow.tasks.verify.intnet import build_network

    xtr, ytr, xte, yte = load_digits_split(0)
    torch.manual_seed(0)
    m = train_classifier(model, xtr, ytr, epochs=epochs)
    plan = {n: bits for n, mod in m.named_modules() if isinstance(mod, (nn.Linear, nn.Conv2d))}
    qm = quantize_model(m, plan, act_bits, [xtr[:256]])
    net = build_network(m, plan, qm.act_qparams, act_bits, xtr[:1])
    return m, qm, net, xte, yte


def tiny_network(seed: int, n_in: int = 4, hidden: int = 5, classes: int = 3, input_bits: int = 4) -> QNetwork:
    """Integer weights in [-3, 3], multipliers 2^-k, biases on the 2^-k grid, inv scale 1: rounding ties (u exactly
    x.5) and logit ties are frequent, so the tie rules are exercised."""
    rng = np.random.default_rng(seed)
    W1 = rng.integers(-3, 4, size=(hidden, n_in))
    W2 = rng.integers(-3, 4, size=(classes, hidden))
    rq = Requant(scale=1.0, inv_scale=1.0, zero_point=0, lo=0, hi=7, bits=3)
    l1 = Layer("fc1", "Linear", W1.astype(np.int64), 0, np.full(hidden, 0.5), rng.integers(-4, 5, hidden) * 0.5,
               True, rq, weight_bits=3)
    l2 = Layer("fc2", "Linear", W2.astype(np.int64), 0, np.full(classes, 0.25), rng.integers(-4, 5, classes) * 0.25,
               False, None, weight_bits=3)
    return QNetwork((l1, l2), (n_in,), 1.0, 0, input_bits, exact=True)


def sigmoid_mlp() -> nn.Module:
    """A digits MLP with a layer the integer semantics does not cover (the CLI must name it)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Sigmoid(), nn.Linear(16, 10))
