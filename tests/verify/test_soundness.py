"""Soundness checks that can fail: every answer against exhaustive enumeration of the input lattice (tiny networks
with deliberate rounding and logit ties, and a trained digits MLP on boxes with few free pixels), counterexample
replay, and bounds against sampled lattice points."""

from __future__ import annotations

import numpy as np
import pytest

from forgeflow.tasks.models.digits import DigitsCNN, DigitsMLP
from forgeflow.tasks.verify.bounds import exact_interval_margins, input_box, interval_bounds, linear_bounds
from forgeflow.tasks.verify.verifier import FALSIFIED, UNKNOWN, VERIFIED, Instance, enumerate_box, verify_instance
from tests.verify.nets import trained, tiny_network


def _check(net, lo, hi, label, center, model=None, tally=None):
    truth = enumerate_box(net, lo, hi, label)
    a = verify_instance(net, Instance(0, 0, label, tuple(center), tuple(lo), tuple(hi)), 20.0, model=model)
    if a.answer == FALSIFIED:
        cex = np.asarray(a.counterexample)
        assert ((cex >= lo) & (cex <= hi)).all(), "counterexample outside the box"
        assert not net.keeps_label(cex.reshape(1, -1), label)[0], "counterexample does not flip the label"
    if a.answer != UNKNOWN:
        assert a.answer == truth, (a, truth)
    if a.answer == VERIFIED:
        assert a.confirmed_by
    if tally is not None:
        tally[(a.answer, truth)] = tally.get((a.answer, truth), 0) + 1
    return a, truth


def test_tiny_networks_with_ties_agree_with_enumeration():
    tally: dict = {}
    rng = np.random.default_rng(1)
    boxes = 0
    ties = 0
    for seed in range(40):
        net = tiny_network(seed)
        for _ in range(6):
            center = rng.integers(0, 16, size=4)
            label = int(net.predict(center.reshape(1, -1))[0])
            eps = int(rng.integers(1, 3))
            lo, hi = input_box(net, center, eps)
            # count boxes whose lattice holds an exact rounding tie or an exact logit tie
            pts = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1)
            pts = pts.reshape(-1, 4)
            u = (pts @ net.layers[0].weight.T) * 0.5 + net.layers[0].bias
            y = net.forward(pts)
            if (np.abs(u - np.floor(u) - 0.5) == 0).any() or (np.sort(y, 1)[:, -1] == np.sort(y, 1)[:, -2]).any():
                ties += 1
            _check(net, lo, hi, label, center, tally=tally)
            boxes += 1
    assert boxes == 240 and ties >= 100
    unknown = sum(v for (a, _), v in tally.items() if a == UNKNOWN)
    assert unknown <= 0.05 * boxes, tally
    assert sum(v for (a, t), v in tally.items() if a == t == FALSIFIED) >= 20, tally
    assert sum(v for (a, t), v in tally.items() if a == t == VERIFIED) >= 20, tally


@pytest.fixture(scope="module")
def mlp():
    return trained(DigitsMLP(32), bits=4, epochs=2)


def test_trained_mlp_small_boxes_agree_with_enumeration(mlp):
    m, qm, net, xte, yte = mlp
    q = net.codes_of(xte.numpy())
    rng = np.random.default_rng(0)
    tally: dict = {}
    for i in range(12):
        label = int(yte[i])
        if net.predict(q[i:i + 1])[0] != label:
            continue
        free = rng.choice(64, size=2 if i % 2 else 3, replace=False)
        eps = int(rng.choice([60, 127])) if i % 2 else 10  # large on 2 pixels so that some boxes are not robust
        lo, hi = q[i].copy(), q[i].copy()
        lo[free] = np.maximum(q[i][free] - eps, 0)
        hi[free] = np.minimum(q[i][free] + eps, 255)
        _check(net, lo, hi, label, q[i], model=qm.model, tally=tally)
    assert sum(tally.values()) >= 8 and not any(a == UNKNOWN for a, _ in tally), tally


@pytest.mark.slow
def test_bounds_contain_every_sampled_point_cnn():
    m, qm, net, xte, yte = trained(DigitsCNN(8), bits=8, epochs=1)
    q = net.codes_of(xte.numpy())
    rng = np.random.default_rng(0)
    for i in range(3):
        label = int(yte[i])
        lo, hi = input_box(net, q[i], 4)
        ib = interval_bounds(net, lo, hi, label)
        lb = linear_bounds(net, lo, hi, label, ib)
        assert (lb.margin_lo[np.arange(10) != label] >= ib.margin_lo[np.arange(10) != label]).all()
        pts = rng.integers(lo, hi + 1, size=(300, 64))
        y, outs = net.forward(pts, trace=True)
        for k, (a, b) in enumerate(lb.out):
            assert (outs[k] >= a).all() and (outs[k] <= b).all()
        margins = y[:, [label]] - y
        others = np.arange(10) != label
        assert (margins[:, others] >= lb.margin_lo[others] - 1e-9).all()
        exact = exact_interval_margins(net, lo, hi, label)
        for j in np.flatnonzero(others):
            assert float(exact[j]) >= ib.margin_lo[j] - 1e-9 and (margins[:, j] >= float(exact[j]) - 1e-9).all()


def test_falsified_instances_replay_and_float_machinery_runs(mlp):
    m, qm, net, xte, yte = mlp
    q = net.codes_of(xte.numpy())
    found = 0
    for i in range(10):
        label = int(yte[i])
        if net.predict(q[i:i + 1])[0] != label:
            continue
        a = verify_instance(net, Instance(i, 48, label, tuple(q[i])), 20.0, model=qm.model)
        if a.answer == FALSIFIED:
            found += 1
            cex = np.asarray(a.counterexample)
            assert np.abs(cex - q[i]).max() <= 48 and not net.keeps_label(cex.reshape(1, -1), label)[0]
    assert found >= 1
