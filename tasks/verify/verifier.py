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


@dataclass
class _Decision:
    """One instance's decision in progress: the box, the per-class thresholds, which method proved which class
    (``first``), and the counters and timings the answer reports. Each phase below reads and extends it."""

    net: QNetwork
    lo: np.ndarray
    hi: np.ndarray
    label: int
    time_limit: float
    t0: float
    best_found: float
    timings: dict[str, float] = field(default_factory=dict)
    method: str = "interval"
    status: str = "not_run"
    solves: int = 0
    nodes: int = 0
    proven: float = -np.inf
    guard: float = 0.0
    need: np.ndarray | None = None
    bounds: Any = None
    first: dict[int, str] = field(default_factory=dict)  # class -> the method that proved its margin
    enc: Any = None  # the exact MILP encoding, built once when needed
    lp_conf: dict[int, float] | None = None  # class -> the LP relaxation's replayed dual bound

    @property
    def others(self) -> list[int]:
        return [j for j in range(self.net.n_classes) if j != self.label]

    def left(self) -> float:
        return self.time_limit - (time.perf_counter() - self.t0)

    def keeps(self, codes: np.ndarray) -> bool:
        return bool(self.net.keeps_label(np.asarray(codes).reshape(1, -1), self.label)[0])

    def done(self, answer: str, method: str, **kw) -> Answer:
        return Answer(answer=answer, method=method, seconds=time.perf_counter() - self.t0, timings=self.timings,
                      **kw)

    def falsified(self, method: str, codes: np.ndarray, margin_lower: float, **kw) -> Answer:
        """A counterexample the exact executor misclassifies (the caller replayed it with ``keeps``)."""
        return self.done(FALSIFIED, method, margin_lower=margin_lower,
                         margin_upper=_margin_at(self.net, codes, self.label),
                         counterexample=tuple(int(v) for v in codes), confirmed_by="executor", **kw)


def verify_instance(net: QNetwork, inst: Instance, time_limit: float = 60.0, model=None,
                    use_attack: bool = True, use_linear: bool = True) -> Answer:
    """Decide ``inst`` on ``net`` within ``time_limit`` seconds (``model``: the torch model for the attack)."""
    t0 = time.perf_counter()
    if inst.lo is not None:
        lo, hi = np.asarray(inst.lo, np.int64), np.asarray(inst.hi, np.int64)
    else:
        lo, hi = input_box(net, np.asarray(inst.center), inst.eps)
    center = np.asarray(inst.center, np.int64)
    d = _Decision(net, lo, hi, inst.label, time_limit, t0, best_found=_margin_at(net, center, inst.label))
    if not d.keeps(center):
        return d.done(FALSIFIED, "center", solver_status="not_run", margin_lower=-np.inf, margin_upper=d.best_found,
                      counterexample=tuple(int(v) for v in center), confirmed_by="executor",
                      detail="the centre itself is misclassified")
    _bound_margins(d, use_linear)
    if not all(j in d.first for j in d.others):
        answer = _search_open_classes(d, model if use_attack else None, center)
        if answer is not None:
            return answer
    return _confirm(d)


def _bound_margins(d: _Decision, use_linear: bool) -> None:
    """Phase 1: interval, then linear bounds, then the LP relaxation per open class; fills ``first`` and ``proven``."""
    net, lo, hi, label = d.net, d.lo, d.hi, d.label
    t = time.perf_counter()
    d.bounds = interval_bounds(net, lo, hi, label)
    d.timings["interval"] = time.perf_counter() - t
    d.guard = guard = guard_of(float(np.max(np.abs(d.bounds.margin_lo[np.isfinite(d.bounds.margin_lo)]),
                                            initial=1.0)))
    if not (d.bounds.margin_lo > guard).all() and use_linear:
        t = time.perf_counter()
        d.bounds = linear_bounds(net, lo, hi, label, d.bounds)
        d.method = "linear"
        d.timings["linear"] = time.perf_counter() - t
    # the decision threshold per class: margin > 0 for j < c; for j > c a tie keeps c (first-max argmax), so on a
    # margin grid g (exact dyadic networks) margin > -g suffices; off-grid, ties cannot be told from tolerance
    g = margin_grid(net, label)
    d.need = need = np.array([guard if (j < label or g is None or g <= 4 * guard) else guard - g
                              for j in range(net.n_classes)])
    d.proven = float(d.bounds.margin_lo.min())
    ib_lo = interval_bounds(net, lo, hi, label).margin_lo if d.method == "linear" else d.bounds.margin_lo
    d.first = {j: ("interval" if ib_lo[j] > need[j] else "linear") for j in range(net.n_classes)
               if j != label and d.bounds.margin_lo[j] > need[j]}
    others = d.others
    if use_linear and not all(j in d.first for j in others):
        # the LP relaxation of the rounding-relaxed encoding (tighter than the linear bounds) as a method of its own:
        # one warm-started LP per class, each stopped once its replayed dual bound clears the class's threshold; the
        # same bounds confirm the classes the linear bounds proved
        t = time.perf_counter()
        d.lp_conf = lp_margins(net, lo, hi, label, d.bounds, others, max(d.left(), 0.0),
                               targets=[max(need[j], guard) for j in others])
        d.timings["lp"] = time.perf_counter() - t
        for j in others:
            if j not in d.first and d.lp_conf.get(j, -np.inf) > max(need[j], guard):
                d.first[j] = "lp"
                d.method = "lp"
        d.proven = max(d.proven, min(max(d.lp_conf.get(j, -np.inf), float(d.bounds.margin_lo[j])) for j in others))


def _search_open_classes(d: _Decision, model, center: np.ndarray) -> Answer | None:
    """Phase 2: PGD, then one exact MILP per class the bounds left open (weakest first). Returns the answer when a
    counterexample or an undecided class ends the search; None when every class is proven."""
    net, label, need, guard = d.net, d.label, d.need, d.guard
    if model is not None:
        t = time.perf_counter()
        cex = pgd_attack(model, net, d.lo, d.hi, label, center)
        d.timings["attack"] = time.perf_counter() - t
        if cex is not None:
            return d.falsified("attack", cex, d.proven, solver_status="not_run")
    t = time.perf_counter()
    d.enc = encode(net, d.lo, d.hi, label, d.bounds)
    d.timings["encode"] = time.perf_counter() - t
    d.method = "milp"
    order = [j for j in np.argsort(d.bounds.margin_lo) if j != label and j not in d.first]
    lowest = np.inf

    def solve(j, left, **kw):
        res = solve_margin(d.enc, int(j), left, **kw)
        d.solves += 1
        d.status = res.status
        return res

    def proved(res, j) -> bool:
        nonlocal lowest
        if res.dual_bound > need[j] and res.status != "infeasible":
            lowest = min(lowest, res.dual_bound)
            d.first[int(j)] = "milp"
            return True
        return False

    t = time.perf_counter()
    for j in order:
        res = solve(j, d.left(), stop_above=float(need[j]))
        d.nodes += res.nodes
        if res.status == "infeasible":  # the centre is feasible: numerical trouble, re-solve without presolve
            res = solve(j, d.left(), presolve=False, stop_above=float(need[j]))
        if res.codes is not None:
            m = _margin_at(net, res.codes, label)
            d.best_found = min(d.best_found, m)
            if not d.keeps(res.codes):
                d.timings["milp"] = time.perf_counter() - t
                return d.falsified("milp", res.codes, min(d.proven, lowest), solver_status=d.status,
                                   milp_solves=d.solves, milp_nodes=d.nodes)
        if proved(res, j):
            continue
        left = d.left()
        if left > 0.05 and res.status not in ("time_limit", "infeasible"):
            res = solve(j, left, exact_gap=True)
            d.nodes += res.nodes
            if proved(res, j):
                continue
            if res.codes is not None and not d.keeps(res.codes):
                d.timings["milp"] = time.perf_counter() - t
                return d.falsified("milp", res.codes, min(d.proven, lowest), solver_status=d.status,
                                   milp_solves=d.solves, milp_nodes=d.nodes)
        d.timings["milp"] = time.perf_counter() - t
        why = ("the margin is within the solver's tolerance of 0" if abs(res.dual_bound) <= guard
               and res.status != "time_limit" else f"class {int(j)} undecided ({res.status})")
        return d.done(UNKNOWN, "milp", solver_status=d.status,
                      margin_lower=min(d.proven, res.dual_bound if np.isfinite(res.dual_bound) else -np.inf),
                      margin_upper=d.best_found, milp_solves=d.solves, milp_nodes=d.nodes, detail=why)
    d.timings["milp"] = time.perf_counter() - t
    lp_lb = d.lp_conf or {}
    rest = [j for j in d.others if d.first.get(j) != "milp"]
    d.proven = max(d.proven, min(lowest, min(max(float(d.bounds.margin_lo[j]), lp_lb.get(j, -np.inf)) for j in rest)
                                 if rest else np.inf))
    return None


def _confirm(d: _Decision) -> Answer:
    """Phase 3: every proven class re-confirmed by a second means (see the module docstring)."""
    net, lo, hi, label, need, guard = d.net, d.lo, d.hi, d.label, d.need, d.guard
    t = time.perf_counter()
    exact = None
    conf_low = np.inf
    means = set()
    lin = sorted(j for j in d.first if d.first[j] == "linear")
    relaxed = None
    if d.lp_conf is None and lin:  # one warm-started LP per class on the rounding-relaxed encoding, dual replayed here
        d.lp_conf = lp_margins(net, lo, hi, label, d.bounds, lin, max(d.left(), 0.0),
                               targets=[max(need[j], guard) for j in lin])
    for j in sorted(d.first):
        left = max(d.left(), 0.0)
        if d.first[j] == "linear" and d.lp_conf.get(j, -np.inf) > max(need[j], guard):
            means.add("lp-dual")
            conf_low = min(conf_low, d.lp_conf[j])
            continue
        if d.first[j] == "interval":
            if exact is None:
                exact = exact_interval_margins(net, lo, hi, label)
            ok = exact[j] > 0 if j < label else exact[j] >= 0  # the exact first-max tie rule
            bound, how = float(exact[j]), "exact-interval"
        else:
            if d.first[j] == "lp":  # the LP proved it: HiGHS's branch and bound on the same relaxed MILP, presolve off
                if relaxed is None:
                    relaxed = encode(net, lo, hi, label, d.bounds, exact_rounding=False)
                model, presolve, stop, how = relaxed, False, max(need[j], guard), "relaxed-milp-presolve-off"
            else:
                if d.enc is None:
                    d.enc = encode(net, lo, hi, label, d.bounds)
                model, presolve, stop = d.enc, d.first[j] == "linear", float(need[j])
                how = "milp" if d.first[j] == "linear" else "milp-presolve-off"
            conf = solve_margin(model, j, left, presolve=presolve, stop_above=stop)
            d.solves += 1
            d.nodes += conf.nodes
            if conf.codes is not None and not d.keeps(conf.codes):
                d.timings["confirm"] = time.perf_counter() - t
                return d.falsified("milp", conf.codes, d.proven, solver_status=conf.status, milp_solves=d.solves,
                                   milp_nodes=d.nodes,
                                   detail=f"{d.first[j]} said class {j} is safe; the confirmation found this "
                                          f"counterexample")
            ok, bound = conf.dual_bound > need[j] and conf.status != "infeasible", conf.dual_bound
        if not ok:
            d.timings["confirm"] = time.perf_counter() - t
            return d.done(UNKNOWN, d.method, solver_status=d.status, margin_lower=d.proven, margin_upper=d.best_found,
                          milp_solves=d.solves, milp_nodes=d.nodes,
                          detail=f"{d.first[j]} proved class {j}'s margin but the {how} confirmation did not "
                                 f"(bound {bound:.6g})")
        means.add(how)
        conf_low = min(conf_low, bound)
    d.timings["confirm"] = time.perf_counter() - t
    return d.done(VERIFIED, d.method, solver_status=d.status, margin_lower=d.proven, margin_upper=d.best_found,
                  confirmed_by="+".join(sorted(means)), milp_solves=d.solves, milp_nodes=d.nodes,
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
