"""The LP second means for linear-bound answers: the Lagrangian bound replayed from any row multipliers is a lower
bound (it cannot exceed the LP optimum, nor the true minimum margin found by enumeration), and with HiGHS's duals it
reaches the LP optimum; the rounding-relaxed MILP never bounds above the exact minimum."""

from __future__ import annotations

import numpy as np

from forgeflow.tasks.solver import LinearModel, SolverOptions, lagrangian_bound, solve, solve_lp_objectives
from forgeflow.tasks.verify.bounds import input_box, linear_bounds
from forgeflow.tasks.verify.milp import encode, lp_margins, solve_margin
from tests.verify.nets import tiny_network


def _small_lp() -> LinearModel:
    m = LinearModel()
    x = m.add_vars(3, 0.0, 4.0)
    m.add_row(x, [1.0, 2.0, 1.0], 3.0, 10.0)
    m.add_row([x[0], x[2]], [1.0, -1.0], -1.0, 1.0)
    m.add_row([x[1], x[2]], [1.0, 1.0], 2.0)
    return m


def test_lagrangian_bound_is_a_bound_for_any_multipliers_and_tight_at_the_duals():
    m = _small_lp()
    rng = np.random.default_rng(0)
    costs = [np.array([1.0, 3.0, 2.0]), np.array([-1.0, 1.0, 0.5]), np.array([2.0, -1.0, 1.0])]
    outs = solve_lp_objectives(m, [(c, 0.25) for c in costs], SolverOptions(time_limit=10))
    for c, o in zip(costs, outs):
        m.cost = list(c)
        m.offset = 0.25
        ref = solve(m, SolverOptions(time_limit=10))
        assert o.status.value == "optimal"
        assert abs(o.objective - ref.objective) < 1e-7
        assert o.dual_bound <= ref.objective + 1e-9 and o.dual_bound > ref.objective - 1e-6
        for _ in range(50):  # any multipliers give a valid (usually weaker) bound
            assert lagrangian_bound(m, rng.normal(size=m.num_rows) * 3, c, 0.25) <= ref.objective + 1e-9


def test_lp_margins_bound_the_enumerated_minimum_on_tiny_networks():
    rng = np.random.default_rng(3)
    checked = 0
    for seed in range(12):
        net = tiny_network(seed)
        center = rng.integers(0, 16, size=4)
        label = int(net.predict(center.reshape(1, -1))[0])
        lo, hi = input_box(net, center, 2)
        pts = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 4)
        y = net.forward(pts)
        bounds = linear_bounds(net, lo, hi, label)
        classes = [j for j in range(net.n_classes) if j != label]
        lp = lp_margins(net, lo, hi, label, bounds, classes, 10.0)
        relaxed = encode(net, lo, hi, label, bounds, exact_rounding=False)
        for j in classes:
            true_min = float((y[:, label] - y[:, j]).min())
            assert np.isfinite(lp[j]) and lp[j] <= true_min + 1e-9, (seed, j, lp[j], true_min)
            r = solve_margin(relaxed, j, 10.0, exact_gap=True)
            assert r.dual_bound <= true_min + 1e-6
            assert r.dual_bound >= lp[j] - 1e-6  # the MILP is at least as tight as its LP relaxation
            checked += 1
    assert checked == 24


def test_lp_objectives_with_targets_stop_early_and_stay_bounds():
    """With a target per objective the answer is only "above the target or not", but every bound is still a bound:
    a bound above the target is at most the optimum, and a target above the optimum is never cleared."""
    m = _small_lp()
    costs = [np.array([1.0, 3.0, 2.0]), np.array([-1.0, 1.0, 0.5]), np.array([2.0, -1.0, 1.0])]
    opt = []
    for c in costs:
        m.cost = list(c)
        m.offset = 0.25
        opt.append(solve(m, SolverOptions(time_limit=10)).objective)
    for shift in (-100.0, -0.5, -1e-3, 1e-3, 0.5):
        targets = [o + shift for o in opt]
        outs = solve_lp_objectives(m, [(c, 0.25) for c in costs], SolverOptions(time_limit=10), targets=targets)
        for o, t, best in zip(outs, targets, opt):
            assert o.dual_bound <= best + 1e-9
            assert (o.dual_bound > t) == (shift < 0), (shift, o.dual_bound, t, best)
    # a far-below target is cleared by the zero multipliers alone (no simplex run)
    outs = solve_lp_objectives(m, [(c, 0.25) for c in costs], SolverOptions(time_limit=10), targets=[-100.0] * 3)
    assert all("zero" in o.detail["highs_status"] for o in outs)


def test_lp_margins_with_targets_on_tiny_networks():
    rng = np.random.default_rng(5)
    for seed in range(6):
        net = tiny_network(seed)
        center = rng.integers(0, 16, size=4)
        label = int(net.predict(center.reshape(1, -1))[0])
        lo, hi = input_box(net, center, 2)
        pts = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 4)
        y = net.forward(pts)
        bounds = linear_bounds(net, lo, hi, label)
        classes = [j for j in range(net.n_classes) if j != label]
        full = lp_margins(net, lo, hi, label, bounds, classes, 10.0)
        for shift in (-0.25, 0.25):
            got = lp_margins(net, lo, hi, label, bounds, classes, 10.0, targets=[full[j] + shift for j in classes])
            for j in classes:
                assert got[j] <= float((y[:, label] - y[:, j]).min()) + 1e-9
                assert got[j] <= full[j] + 1e-6
                assert (got[j] > full[j] + shift) == (shift < 0)
