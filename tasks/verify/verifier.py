"""Decide one robustness instance: bounds, then an attack, then the exact MILP; every answer double-checked.

Order (cheapest first): interval bounds, linear bounds, then (if some class is still open) the LP relaxation of the
rounding-relaxed encoding, one warm-started LP per class stopped as soon as its replayed dual bound clears the
class's threshold (``milp.lp_margins``; tighter than the linear bounds), PGD (counterexamples replayed exactly),
then one MILP per class ``j`` whose margin none of these certified (weakest first, big-M from the linear bounds).

* **falsified** only with a counterexample in the box that the exact executor misclassifies (replayed here);
* **verified** only when every class's margin has a proven lower bound above ``guard`` (a margin within the
  solver's tolerances is never taken as positive) **and** a second means agrees, class by class:
  float64 interval bounds -> the same bounds recomputed in exact rational arithmetic (``exact_interval_margins``);
  linear bounds -> the LP relaxation of the rounding-relaxed encoding solved by HiGHS's simplex, whose row duals
  are replayed here into a Lagrangian bound that does not trust the solver (``milp.lp_margins``), and where that
  does not reach, the exact MILP (a different algorithm); LP -> HiGHS's branch and bound on the same relaxed MILP
  with presolve off, stopped once its own dual bound clears the threshold; MILP -> the MILP re-solved with presolve off (HiGHS has
  open reports of presolve wrongly declaring models infeasible). An infeasible status never counts: the centre is
  always feasible. If the confirmation cannot decide in
  the time left the answer is **unknown**;
* **unknown** otherwise, with the best proven lower bound and the best margin found.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from forgeflow.tasks.verify.attack import pgd_attack
from forgeflow.tasks.verify.bounds import exact_interval_margins, input_box, interval_bounds, linear_bounds
from forgeflow.tasks.verify.intnet import QNetwork
from forgeflow.tasks.verify.milp import encode, lp_margins, margin_grid, solve_margin

VERIFIED, FALSIFIED, UNKNOWN = "verified", "falsified", "unknown"
GUARD_RTOL = 1e-5  # margins within guard = GUARD_RTOL * (1 + |margin scale|) are never taken as decided by a solver


@dataclass(frozen=True)
class Instance:
    """One property: the image's input codes, its label, eps in input steps (or an explicit box)."""

    image: int
    eps: int
    label: int
    center: tuple[int, ...]
    lo: tuple[int, ...] | None = None  # explicit box (tests, enumeration); default: the eps box around center
    hi: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Answer:
    answer: str
    method: str  # interval | linear | attack | milp | none
    seconds: float
    solver_status: str  # status of the deciding (or last) MILP solve; 'not_run' without one
    margin_lower: float  # proven lower bound on min_j (y_c - y_j)
    margin_upper: float  # best (smallest) margin found at a point in the box
    counterexample: tuple[int, ...] | None = None
    confirmed_by: str | None = None
    milp_solves: int = 0
    milp_nodes: int = 0
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def guard_of(scale: float) -> float:
    return GUARD_RTOL * (1.0 + abs(scale))


def _margin_at(net: QNetwork, codes: np.ndarray, label: int) -> float:
    y = net.forward(np.asarray(codes).reshape(1, -1))[0]
    other = np.delete(y, label)
    return float(y[label] - other.max())


def verify_instance(net: QNetwork, inst: Instance, time_limit: float = 60.0, model=None,
                    use_attack: bool = True, use_linear: bool = True) -> Answer:
    """Decide ``inst`` on ``net`` within ``time_limit`` seconds (``model``: the torch model for the attack)."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    label = inst.label
    if inst.lo is not None:
        lo, hi = np.asarray(inst.lo, np.int64), np.asarray(inst.hi, np.int64)
    else:
        lo, hi = input_box(net, np.asarray(inst.center), inst.eps)
    center = np.asarray(inst.center, np.int64)
    best_found = _margin_at(net, center, label)

    def done(answer, method, **kw):
        return Answer(answer=answer, method=method, seconds=time.perf_counter() - t0, timings=timings, **kw)

    if not net.keeps_label(center.reshape(1, -1), label)[0]:
        return done(FALSIFIED, "center", solver_status="not_run", margin_lower=-np.inf, margin_upper=best_found,
                    counterexample=tuple(int(v) for v in center), confirmed_by="executor",
                    detail="the centre itself is misclassified")
    t = time.perf_counter()
    bounds = interval_bounds(net, lo, hi, label)
    method = "interval"
    timings["interval"] = time.perf_counter() - t
    guard = guard_of(float(np.max(np.abs(bounds.margin_lo[np.isfinite(bounds.margin_lo)]), initial=1.0)))
    if not (bounds.margin_lo > guard).all() and use_linear:
        t = time.perf_counter()
        bounds = linear_bounds(net, lo, hi, label, bounds)
        method = "linear"
        timings["linear"] = time.perf_counter() - t
    # the decision threshold per class: margin > 0 for j < c; for j > c a tie keeps c (first-max argmax), so on a
    # margin grid g (exact dyadic networks) margin > -g suffices; off-grid, ties cannot be told from tolerance
    g = margin_grid(net, label)
    need = np.array([guard if (j < label or g is None or g <= 4 * guard) else guard - g
                     for j in range(net.n_classes)])
    proven = float(bounds.margin_lo.min())
    ib_lo = interval_bounds(net, lo, hi, label).margin_lo if method == "linear" else bounds.margin_lo
    first = {j: ("interval" if ib_lo[j] > need[j] else "linear") for j in range(net.n_classes)
             if j != label and bounds.margin_lo[j] > need[j]}
    solves = nodes = 0
    enc = None
    status = "not_run"
    others = [j for j in range(net.n_classes) if j != label]
    lp_conf = None
    if use_linear and not all(j in first for j in others):
        # the LP relaxation of the rounding-relaxed encoding (tighter than the linear bounds) as a method of its own:
        # one warm-started LP per class, each stopped once its replayed dual bound clears the class's threshold; the
        # same bounds confirm the classes the linear bounds proved
        t = time.perf_counter()
        lp_conf = lp_margins(net, lo, hi, label, bounds, others, max(time_limit - (time.perf_counter() - t0), 0.0),
                             targets=[max(need[j], guard) for j in others])
        timings["lp"] = time.perf_counter() - t
        for j in others:
            if j not in first and lp_conf.get(j, -np.inf) > max(need[j], guard):
                first[j] = "lp"
                method = "lp"
        proven = max(proven, min(max(lp_conf.get(j, -np.inf), float(bounds.margin_lo[j])) for j in others))
    if not all(j in first for j in others):
        if use_attack and model is not None:
            t = time.perf_counter()
            cex = pgd_attack(model, net, lo, hi, label, center)
            timings["attack"] = time.perf_counter() - t
            if cex is not None:
                return done(FALSIFIED, "attack", solver_status="not_run", margin_lower=proven,
                            margin_upper=_margin_at(net, cex, label), counterexample=tuple(int(v) for v in cex),
                            confirmed_by="executor")
        t = time.perf_counter()
        enc = encode(net, lo, hi, label, bounds)
        timings["encode"] = time.perf_counter() - t
        method = "milp"
        order = [j for j in np.argsort(bounds.margin_lo) if j != label and j not in first]
        lowest = np.inf
        t = time.perf_counter()
        for j in order:
            left = time_limit - (time.perf_counter() - t0)
            res = solve_margin(enc, int(j), left, stop_above=float(need[j]))
            solves += 1
            nodes += res.nodes
            status = res.status
            if res.status == "infeasible":  # the centre is feasible: numerical trouble, re-solve without presolve
                res = solve_margin(enc, int(j), time_limit - (time.perf_counter() - t0), presolve=False,
                                   stop_above=float(need[j]))
                solves += 1
                status = res.status
            if res.codes is not None:
                m = _margin_at(net, res.codes, label)
                best_found = min(best_found, m)
                if not net.keeps_label(res.codes.reshape(1, -1), label)[0]:
                    timings["milp"] = time.perf_counter() - t
                    return done(FALSIFIED, "milp", solver_status=status, margin_lower=min(proven, lowest),
                                margin_upper=m, counterexample=tuple(int(v) for v in res.codes),
                                confirmed_by="executor", milp_solves=solves, milp_nodes=nodes)
            if res.dual_bound > need[j] and res.status != "infeasible":
                lowest = min(lowest, res.dual_bound)
                first[int(j)] = "milp"
                continue
            left = time_limit - (time.perf_counter() - t0)
            if left > 0.05 and res.status not in ("time_limit", "infeasible"):
                res = solve_margin(enc, int(j), left, exact_gap=True)
                solves += 1
                nodes += res.nodes
                status = res.status
                if res.dual_bound > need[j] and res.status != "infeasible":
                    lowest = min(lowest, res.dual_bound)
                    first[int(j)] = "milp"
                    continue
                if res.codes is not None and not net.keeps_label(res.codes.reshape(1, -1), label)[0]:
                    timings["milp"] = time.perf_counter() - t
                    return done(FALSIFIED, "milp", solver_status=status, margin_lower=min(proven, lowest),
                                margin_upper=_margin_at(net, res.codes, label),
                                counterexample=tuple(int(v) for v in res.codes), confirmed_by="executor",
                                milp_solves=solves, milp_nodes=nodes)
            timings["milp"] = time.perf_counter() - t
            why = ("the margin is within the solver's tolerance of 0" if abs(res.dual_bound) <= guard
                   and res.status != "time_limit" else f"class {int(j)} undecided ({res.status})")
            return done(UNKNOWN, "milp", solver_status=status,
                        margin_lower=min(proven, res.dual_bound if np.isfinite(res.dual_bound) else -np.inf),
                        margin_upper=best_found, milp_solves=solves, milp_nodes=nodes, detail=why)
        timings["milp"] = time.perf_counter() - t
        lp_lb = lp_conf or {}
        proven = max(proven, min(lowest, min(max(float(bounds.margin_lo[j]), lp_lb.get(j, -np.inf))
                                             for j in others if first.get(j) != "milp")
                                 if any(first.get(j) != "milp" for j in others) else np.inf))
    # verified: every class re-confirmed by a second means (see the module docstring)
    t = time.perf_counter()
    exact = None
    conf_low = np.inf
    means = set()
    lin = sorted(j for j in first if first[j] == "linear")
    relaxed = None
    if lp_conf is None and lin:  # one warm-started LP per class on the rounding-relaxed encoding, dual replayed here
        lp_conf = lp_margins(net, lo, hi, label, bounds, lin, max(time_limit - (time.perf_counter() - t0), 0.0),
                             targets=[max(need[j], guard) for j in lin])
    for j in sorted(first):
        left = max(time_limit - (time.perf_counter() - t0), 0.0)
        if first[j] == "linear" and lp_conf.get(j, -np.inf) > max(need[j], guard):
            means.add("lp-dual")
            conf_low = min(conf_low, lp_conf[j])
            continue
        if first[j] == "interval":
            if exact is None:
                exact = exact_interval_margins(net, lo, hi, label)
            ok = exact[j] > 0 if j < label else exact[j] >= 0  # the exact first-max tie rule
            bound, how = float(exact[j]), "exact-interval"
        else:
            if first[j] == "lp":  # the LP proved it: HiGHS's branch and bound on the same relaxed MILP, presolve off
                if relaxed is None:
                    relaxed = encode(net, lo, hi, label, bounds, exact_rounding=False)
                model, presolve, stop, how = relaxed, False, max(need[j], guard), "relaxed-milp-presolve-off"
            else:
                if enc is None:
                    enc = encode(net, lo, hi, label, bounds)
                model, presolve, stop = enc, first[j] == "linear", float(need[j])
                how = "milp" if first[j] == "linear" else "milp-presolve-off"
            conf = solve_margin(model, j, left, presolve=presolve, stop_above=stop)
            solves += 1
            nodes += conf.nodes
            if conf.codes is not None and not net.keeps_label(conf.codes.reshape(1, -1), label)[0]:
                timings["confirm"] = time.perf_counter() - t
                return done(FALSIFIED, "milp", solver_status=conf.status, margin_lower=proven,
                            margin_upper=_margin_at(net, conf.codes, label),
                            counterexample=tuple(int(v) for v in conf.codes), confirmed_by="executor",
                            milp_solves=solves, milp_nodes=nodes,
                            detail=f"{first[j]} said class {j} is safe; the confirmation found this counterexample")
            ok, bound = conf.dual_bound > need[j] and conf.status != "infeasible", conf.dual_bound
        if not ok:
            timings["confirm"] = time.perf_counter() - t
            return done(UNKNOWN, method, solver_status=status, margin_lower=proven, margin_upper=best_found,
                        milp_solves=solves, milp_nodes=nodes,
                        detail=f"{first[j]} proved class {j}'s margin but the {how} confirmation did not "
                               f"(bound {bound:.6g})")
        means.add(how)
        conf_low = min(conf_low, bound)
    timings["confirm"] = time.perf_counter() - t
    return done(VERIFIED, method, solver_status=status, margin_lower=proven, margin_upper=best_found,
                confirmed_by="+".join(sorted(means)), milp_solves=solves, milp_nodes=nodes,
                detail=f"second-means bound {conf_low:.6g}")


def enumerate_box(net: QNetwork, lo: np.ndarray, hi: np.ndarray, label: int, limit: int = 2_000_000) -> str:
    """The ground truth by exhaustive enumeration of every lattice point in the box (small boxes only)."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    sizes = hi - lo + 1
    total = int(np.prod(sizes.astype(object)))
    if total > limit:
        raise ValueError(f"box has {total} points (> {limit})")
    free = np.flatnonzero(sizes > 1)
    grids = np.meshgrid(*[np.arange(lo[i], hi[i] + 1) for i in free], indexing="ij")
    pts = np.tile(lo, (total, 1))
    for g, i in zip(grids, free):
        pts[:, i] = g.reshape(-1)
    for s in range(0, total, 65536):
        if not net.keeps_label(pts[s:s + 65536], label).all():
            return FALSIFIED
    return VERIFIED
