"""The MILP encoding of "every input code in the box keeps label c", solved with HiGHS through ``tasks.solver``.

Variables and constraints (all big-M values come from proven bounds, never guesses):

* input codes ``q_i``: integer in ``[lo_i, hi_i]``;
* quantized hidden neuron: the pre-activation ``u = M h + m0`` is an affine expression of the previous layer's codes;
  the rounded value ``r`` is an **integer variable with its bracket** ``-1/2 <= u - r <= 1/2`` (round to nearest;
  at an exact half-integer both neighbours are admitted, a superset of torch's half-to-even, so "infeasible" stays
  sound and a counterexample is always replayed exactly before it is reported); the code is
  ``clamp(r + z, lo, hi)``, encoded with one binary per active side of the clamp and big-M from the bounds on ``r``;
  neurons whose code is fixed by the bounds are constants;
* float reference neurons: ``y = M h + m0`` continuous, ReLU with one binary and big-M from the bounds on ``y``;
* max pooling: ``p >= c_w`` for the window and, unless one element dominates, one binary per candidate element
  with ``p <= c_w + (U - L_w)(1 - d_w)``, ``sum d_w = 1``;
* objective: the margin ``y_c - y_j`` (per-class encoding, minimised), or ``w = min_j (y_c - y_j)`` with one binary
  per class (the disjunctive encoding used to re-confirm "verified" answers independently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.solver import LinearModel, SolveOutcome, SolverOptions, solve, solve_lp_objectives
from forgeflow.tasks.verify.bounds import NetBounds, _act_bounds, _affine, _margin_rows
from forgeflow.tasks.verify.intnet import QNetwork


@dataclass
class Encoding:
    model: LinearModel
    inputs: np.ndarray  # column index of each input code
    last: list  # per last-hidden neuron: ("var", col) or ("const", value)
    margin_rows: np.ndarray
    margin_const: np.ndarray


def _expr_row(terms, coefs):
    cols, vals, const = [], [], 0.0
    for (kind, v), a in zip(terms, coefs):
        if a == 0.0:
            continue
        if kind == "var":
            cols.append(v)
            vals.append(a)
        else:
            const += a * v
    return cols, vals, const


def _clamp(m: LinearModel, r: int, z: int, rl: int, ru: int, lo: int, hi: int) -> int:
    """A variable equal to clamp(r + z, lo, hi) for integer r in [rl, ru] (binaries only for the active sides)."""
    tl, tu = rl + z, ru + z
    if tl >= lo and tu <= hi:
        if z == 0:  # no clamp side can be active: the code is r itself
            return r
        c = m.add_var(tl, tu)
        m.add_row([c, r], [1.0, -1.0], z, z)
        return c
    cur, cur_l, cur_u, cur_off = r, tl, tu, z  # the expression cur + cur_off in [cur_l, cur_u]
    if tl < lo:  # c1 = max(t, lo)
        c1 = m.add_var(lo, max(tu, lo))
        d = m.add_var(0, 1, integer=True)
        m.add_row([c1, cur], [1.0, -1.0], cur_off, math.inf)  # c1 >= t
        m.add_row([c1, cur, d], [1.0, -1.0, -(lo - tl)], -math.inf, cur_off)  # c1 <= t + (lo - tl) d
        m.add_row([c1, d], [1.0, (tu - lo)], -math.inf, lo + max(tu - lo, 0))  # c1 <= lo + (tu - lo)(1 - d)
        cur, cur_l, cur_u, cur_off = c1, lo, max(tu, lo), 0
    if cur_u > hi:  # c = min(cur, hi)
        c = m.add_var(min(cur_l, hi), hi)
        d = m.add_var(0, 1, integer=True)
        m.add_row([c, cur], [1.0, -1.0], -math.inf, cur_off)  # c <= t
        m.add_row([c, cur, d], [1.0, -1.0, (cur_u - hi)], cur_off, math.inf)  # c >= t - (tu - hi) d
        m.add_row([c, d], [1.0, -(hi - cur_l)], hi - (hi - cur_l), math.inf)  # c >= hi - (hi - tl)(1 - d)
        return c
    if cur_off:
        c = m.add_var(cur_l, cur_u)
        m.add_row([c, cur], [1.0, -1.0], cur_off, cur_off)
        return c
    return cur


MAX_GRID_DENOMINATOR = 2 ** 20


def grid_of(values) -> float | None:
    """The largest g = 1/D (D <= 2**20) such that every value is an integer multiple of g, else None. Used to encode
    exact ties: on such a grid, strict inequalities become non-strict ones shifted by g."""
    from fractions import Fraction
    from math import lcm

    d = 1
    for v in np.asarray(values, dtype=float).reshape(-1):
        d = lcm(d, Fraction(float(v)).denominator)
        if d > MAX_GRID_DENOMINATOR:
            return None
    return 1.0 / d


_GRID_CACHE: dict = {}


def layer_grid(L) -> float | None:
    """Grid of the pre-activation u = (A acc + B) * inv of a quantized layer (acc integer), exactly (cached per
    layer object: the exact Fraction arithmetic is slow on conv layers)."""
    if L.requant is None:
        return None
    hit = _GRID_CACHE.get(id(L))
    if hit is not None and hit[0] is L:
        return hit[1]
    g = _layer_grid(L)
    if len(_GRID_CACHE) > 64:
        _GRID_CACHE.clear()
    _GRID_CACHE[id(L)] = (L, g)
    return g


def _layer_grid(L) -> float | None:
    from fractions import Fraction

    inv = Fraction(float(L.requant.inv_scale))
    vals = [Fraction(float(a)) * inv for a in L.mult] + [Fraction(float(b)) * inv for b in L.bias]
    d = 1
    from math import lcm
    for v in vals:
        d = lcm(d, v.denominator)
        if d > MAX_GRID_DENOMINATOR:
            return None
    return 1.0 / d


def margin_grid(net: QNetwork, label: int) -> float | None:
    """Grid of every margin y_c - y_j when the last layer's inputs are integers (quantized networks)."""
    if not net.exact:
        return None
    L = net.layers[-1]
    return grid_of(np.concatenate([L.mult, L.bias]))


def encode(net: QNetwork, lo: np.ndarray, hi: np.ndarray, label: int, bounds: NetBounds,
           exact_rounding: bool = True) -> Encoding:
    """The MILP of the box. ``exact_rounding=False`` gives the **rounding-relaxed** MILP: each rounded value ``r`` is
    a continuous variable with the same bracket ``|u - r| <= 1/2`` (clamps, ReLUs and max pooling stay exact with
    their binaries). Its feasible set contains the exact one, so a positive proven margin is a proof for the exact
    network; a solution of it is only a candidate (replayed before it counts)."""
    m = LinearModel()
    inputs = m.add_vars(len(lo), 0, 0, integer=True)
    for i, c in enumerate(inputs):
        m.lower[c], m.upper[c] = float(lo[i]), float(hi[i])
    h = [("var", int(c)) if lo[i] != hi[i] else ("const", float(lo[i])) for i, c in enumerate(inputs)]
    for k, L in enumerate(net.layers[:-1]):
        M, m0 = _affine(L, net, k)
        ulo, uhi = bounds.pre[k]
        clo, chi = _act_bounds(L, ulo, uhi)
        acts = []
        g = layer_grid(L) if (net.exact and exact_rounding) else None
        for i in range(M.shape[0]):
            if clo[i] == chi[i]:
                acts.append(("const", float(clo[i])))
                continue
            cols, vals, const = _expr_row(h, M[i])
            if L.requant is not None:
                rq = L.requant
                rl, ru = int(math.ceil(ulo[i] - 0.5)), int(math.floor(uhi[i] + 0.5))
                z = int(rq.zero_point)
                # the variable is s = r + z (the unclamped code), so a neuron whose clamp cannot act needs no more
                s = m.add_var(rl + z, ru + z, integer=exact_rounding)
                base = const + m0[i] + z  # u + z - s = u - r, bracketed by 1/2
                if exact_rounding and g is not None and g < 0.5:  # exact half-to-even: r = 2h + p, an odd r excludes both ties
                    hv = m.add_var(math.floor(rl / 2) - 1, math.ceil(ru / 2) + 1, integer=True)
                    p = m.add_var(0, 1, integer=True)
                    m.add_row([s, hv, p], [1.0, -2.0, -1.0], z, z)
                    m.add_row(cols + [s, p], vals + [-1.0, -g], -0.5 - base, math.inf)
                    m.add_row(cols + [s, p], vals + [-1.0, g], -math.inf, 0.5 - base)
                else:
                    m.add_row(cols + [s], vals + [-1.0], -0.5 - base, 0.5 - base)
                acts.append(("var", _clamp(m, s, 0, rl + z, ru + z, rq.lo, rq.hi)))
            else:
                y = m.add_var(ulo[i], uhi[i])
                m.add_row(cols + [y], vals + [-1.0], -(const + m0[i]), -(const + m0[i]))
                if not L.relu or ulo[i] >= 0:
                    acts.append(("var", y))
                elif uhi[i] <= 0:
                    acts.append(("const", 0.0))
                else:
                    c = m.add_var(0, uhi[i])
                    d = m.add_var(0, 1, integer=True)
                    m.add_row([c, y], [1.0, -1.0], 0, math.inf)
                    m.add_row([c, y, d], [1.0, -1.0, -ulo[i]], -math.inf, -ulo[i])  # c <= y - l (1 - d)
                    m.add_row([c, d], [1.0, -uhi[i]], -math.inf, 0)  # c <= u d
                    acts.append(("var", c))
        if L.pool is not None:
            pooled = []
            for win in L.pool:
                terms = [acts[w] for w in win]
                lows = np.array([clo[w] for w in win], dtype=float)
                ups = np.array([chi[w] for w in win], dtype=float)
                best = int(np.argmax(lows))
                others = np.delete(ups, best)
                if len(others) == 0 or lows[best] >= others.max():
                    pooled.append(terms[best])
                    continue
                U = float(ups.max())
                p = m.add_var(float(lows.max()), U)
                cand = [w for w in range(len(win)) if ups[w] >= lows.max()]
                ds = []
                for w, t in enumerate(terms):
                    if t[0] == "var":
                        m.add_row([p, t[1]], [1.0, -1.0], 0, math.inf)
                    if w in cand:
                        d = m.add_var(0, 1, integer=True)
                        ds.append(d)
                        bigm = U - lows[w]
                        if t[0] == "var":  # p <= c_w + bigm (1 - d)
                            m.add_row([p, t[1], d], [1.0, -1.0, bigm], -math.inf, bigm)
                        else:
                            m.add_row([p, d], [1.0, bigm], -math.inf, t[1] + bigm)
                m.add_row(ds, [1.0] * len(ds), 1, 1)
                pooled.append(("var", p))
            acts = pooled
        h = acts
    rows, const = _margin_rows(net, label)
    return Encoding(m, inputs, h, rows, const)


def _margin_objective(enc: Encoding, j: int) -> None:
    m = enc.model
    m.cost = [0.0] * m.num_cols
    m.offset = float(enc.margin_const[j])
    for (kind, v), a in zip(enc.last, enc.margin_rows[j]):
        if kind == "var":
            m.cost[v] += float(a)
        else:
            m.offset += float(a) * v


@dataclass(frozen=True)
class MarginSolve:
    """One solve: the proven lower bound on the margin, the incumbent's margin and input codes (if any)."""

    status: str
    dual_bound: float
    objective: float
    seconds: float
    codes: np.ndarray | None
    nodes: int


def _outcome(out: SolveOutcome, enc: Encoding) -> MarginSolve:
    codes = None
    if out.solution is not None:
        codes = np.rint(out.solution[enc.inputs]).astype(np.int64)
        lo = np.array([enc.model.lower[c] for c in enc.inputs])
        hi = np.array([enc.model.upper[c] for c in enc.inputs])
        codes = np.clip(codes, lo, hi).astype(np.int64)
    return MarginSolve(out.status.value, float(out.dual_bound), float(out.objective), float(out.seconds), codes,
                       int(out.detail.get("nodes", 0)))


def options(time_limit: float, presolve: bool = True, exact_gap: bool = False) -> SolverOptions:
    """One HiGHS thread. The relative gap 0.999 stops as soon as the proven bound is positive (a sign decision is
    all we need) unless ``exact_gap``."""
    extra = {} if presolve else {"presolve": "off"}
    return SolverOptions(time_limit=max(time_limit, 0.05), threads=1, mip_rel_gap=1e-6 if exact_gap else 0.999,
                         extra=extra)


def solve_margin(enc: Encoding, j: int, time_limit: float, presolve: bool = True,
                 exact_gap: bool = False, lp: bool = False, stop_above: float | None = None) -> MarginSolve:
    """Minimise ``y_c - y_j`` over the box. ``lp``: the LP relaxation (every integrality dropped; its optimum is a
    lower bound on the margin, and HiGHS proves it by the dual simplex, an algorithm independent of bound
    propagation). ``stop_above``: stop once the proven bound exceeds it (a sign decision needs no incumbent)."""
    _margin_objective(enc, j)
    model = enc.model
    if lp:
        import copy

        model = copy.copy(model)
        model.integer = [False] * model.num_cols
    return _outcome(solve(model, options(time_limit, presolve, exact_gap), stop_above=stop_above), enc)


def solve_min_margin(net: QNetwork, lo, hi, label: int, bounds: NetBounds, time_limit: float,
                     presolve: bool = False) -> MarginSolve:
    """The disjunctive encoding: minimise ``w = min_j (y_c - y_j)`` (one binary per class j)."""
    enc = encode(net, lo, hi, label, bounds)
    m = enc.model
    others = [j for j in range(len(enc.margin_const)) if j != label]
    mlo = np.array([bounds.margin_lo[j] for j in others])
    mhi = np.array([bounds.margin_hi[j] for j in others])
    w_lo, w_hi = float(mlo.min()), float(mhi.min())
    w = m.add_var(w_lo, w_hi)
    ds = []
    for idx, j in enumerate(others):
        cols, vals, const = _expr_row(enc.last, enc.margin_rows[j])
        const += float(enc.margin_const[j])
        # w <= margin_j
        m.add_row([w] + cols, [1.0] + [-v for v in vals], -math.inf, const)
        if mlo[idx] > w_hi:
            continue  # class j can never be the minimum
        d = m.add_var(0, 1, integer=True)
        ds.append(d)
        bigm = float(mhi[idx] - w_lo)
        # w >= margin_j - bigm (1 - d)
        m.add_row([w] + cols + [d], [1.0] + [-v for v in vals] + [-bigm], const - bigm, math.inf)
    m.add_row(ds, [1.0] * len(ds), 1, 1)
    m.cost = [0.0] * m.num_cols
    m.cost[w] = 1.0
    m.offset = 0.0
    return _outcome(solve(m, options(time_limit, presolve)), enc)


def lp_margins(net: QNetwork, lo, hi, label: int, bounds: NetBounds, classes, time_limit: float,
               targets=None) -> dict[int, float]:
    """Proven lower bounds on the margins ``y_c - y_j`` (``j`` in ``classes``) from the LP relaxation of the
    rounding-relaxed encoding: HiGHS solves one LP per class (warm-started), and each bound is the Lagrangian bound
    of its row duals recomputed here (``solver.lagrangian_bound``), valid whatever the solver's tolerances.
    ``-inf`` for a class the LP could not bound in the time. ``targets`` (one per class): stop each class as soon as
    its bound is proven above the target (see ``solver.solve_lp_objectives``); the bound returned is then only
    known to be above the target, not the LP optimum."""
    enc = encode(net, lo, hi, label, bounds, exact_rounding=False)
    objectives = []
    for j in classes:
        _margin_objective(enc, int(j))
        objectives.append((np.asarray(enc.model.cost, dtype=float), float(enc.model.offset)))
    outs = solve_lp_objectives(enc.model, objectives, SolverOptions(time_limit=max(time_limit, 0.05), threads=1),
                               targets=targets)
    return {int(j): float(o.dual_bound) for j, o in zip(classes, outs)}
