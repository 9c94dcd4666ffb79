"""Bound propagation on the integer semantics: intervals, and a linear (DeepPoly / CROWN-style) relaxation.

For a box of input codes, every hidden layer gets bounds on its pre-activation ``u`` (``u = y * inv`` for a quantized
layer, ``y`` for a float one) and on its output codes; the output gets lower bounds on the margins
``y_c - y_j``. Quantized activations ``clamp(round(u) + z, lo, hi)`` are bounded using ``round(u) in [u - 1/2,
u + 1/2]`` (true for any rounding to nearest, ties either way), so the bounds hold for the exact semantics:

* **interval**: integer interval arithmetic on ``acc`` (exact in int64) and outward-widened float64 for ``u``;
* **linear**: each activation is sandwiched between two parallel lines (slope = the chord of its code interval,
  offsets the exact extremes of the piecewise-linear envelope), max pooling by its DeepPoly relaxation (below by
  the window element with the largest lower bound, above by a constant or the dominating element), and every
  hidden neuron's and every margin's bound is obtained by back-substituting to the input box (CROWN). Bounds are
  intersected with the interval ones, so they are never looser.

Every float64 result is widened by ``WIDEN_RTOL`` relative + ``WIDEN_ATOL`` absolute (far above float64 rounding of
these short sums), so the bounds are sound for the exact rational semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.verify.intnet import Layer, QNetwork

WIDEN_RTOL = 1e-9
WIDEN_ATOL = 1e-9


@dataclass(frozen=True)
class NetBounds:
    """Bounds for one input box. ``pre[k]``/``out[k]``: (lo, hi) of hidden layer k's pre-activation (per neuron,
    before pooling) and output (after activation and pooling). ``margin_lo/hi[j]``: bounds on ``y_c - y_j``
    (``+inf`` at ``j = c``)."""

    pre: tuple[tuple[np.ndarray, np.ndarray], ...]
    out: tuple[tuple[np.ndarray, np.ndarray], ...]
    margin_lo: np.ndarray
    margin_hi: np.ndarray
    method: str


def _widen(lo: np.ndarray, hi: np.ndarray):
    return (lo - WIDEN_RTOL * np.abs(lo) - WIDEN_ATOL, hi + WIDEN_RTOL * np.abs(hi) + WIDEN_ATOL)


_AFFINE_CACHE: dict = {}


def _affine(L: Layer, net: QNetwork, k: int):
    """``u = M h + m0`` of layer k in terms of its input h (M float64 (out, in), m0 (out,)); cached per layer."""
    key = (id(L), k)
    hit = _AFFINE_CACHE.get(key)
    if hit is not None and hit[0] is L:
        return hit[1], hit[2]
    inv = L.requant.inv_scale if (L.requant is not None and k < len(net.layers) - 1) else 1.0
    W = L.weight.astype(np.float64)
    M = (inv * L.mult)[:, None] * W
    m0 = inv * (L.bias - L.mult * (W @ np.full(W.shape[1], float(L.in_zero_point))))
    if len(_AFFINE_CACHE) > 64:
        _AFFINE_CACHE.clear()
    _AFFINE_CACHE[key] = (L, M, m0)
    return M, m0


def _act_bounds(L: Layer, ulo: np.ndarray, uhi: np.ndarray):
    """Bounds of the activation output (before pooling) from pre-activation bounds."""
    if L.requant is not None:
        rq = L.requant
        rlo = np.ceil(ulo - 0.5)
        rhi = np.floor(uhi + 0.5)
        return np.clip(rlo + rq.zero_point, rq.lo, rq.hi), np.clip(rhi + rq.zero_point, rq.lo, rq.hi)
    if L.relu:
        return np.maximum(ulo, 0.0), np.maximum(uhi, 0.0)
    return ulo, uhi


def _pool(L: Layer, lo: np.ndarray, hi: np.ndarray):
    if L.pool is None:
        return lo, hi
    return lo[L.pool].max(axis=1), hi[L.pool].max(axis=1)


def _margin_rows(net: QNetwork, label: int):
    """Margin ``y_c - y_j`` as affine functions of the last hidden output: (rows (classes, in), const)."""
    L = net.layers[-1]
    W = L.weight.astype(np.float64)
    Y = L.mult[:, None] * W
    y0 = L.bias - L.mult * (W @ np.full(W.shape[1], float(L.in_zero_point)))
    return Y[label][None, :] - Y, y0[label] - y0


def _concretize(rows: np.ndarray, const: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    pos, neg = np.maximum(rows, 0.0), np.minimum(rows, 0.0)
    return const + pos @ lo + neg @ hi, const + pos @ hi + neg @ lo


def interval_bounds(net: QNetwork, lo: np.ndarray, hi: np.ndarray, label: int) -> NetBounds:
    """Interval bounds (exact integer MACs for quantized layers)."""
    h_lo, h_hi = np.asarray(lo, dtype=np.int64 if net.exact else np.float64), np.asarray(hi)
    h_hi = h_hi.astype(h_lo.dtype)
    pre, out = [], []
    for k, L in enumerate(net.layers[:-1]):
        if net.exact:
            W = L.weight
            d_lo, d_hi = h_lo - L.in_zero_point, h_hi - L.in_zero_point
            Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
            a_lo, a_hi = Wp @ d_lo + Wn @ d_hi, Wp @ d_hi + Wn @ d_lo  # exact int64
            A = L.mult
            y_lo = np.where(A >= 0, A * a_lo, A * a_hi) + L.bias
            y_hi = np.where(A >= 0, A * a_hi, A * a_lo) + L.bias
            inv = L.requant.inv_scale if L.requant is not None else 1.0
            u_lo, u_hi = _widen(y_lo * inv, y_hi * inv)
        else:
            M, m0 = _affine(L, net, k)
            u_lo, u_hi = _widen(*_concretize(M, m0, h_lo, h_hi))
        pre.append((u_lo, u_hi))
        a_lo, a_hi = _act_bounds(L, u_lo, u_hi)
        h_lo, h_hi = _pool(L, a_lo, a_hi)
        out.append((h_lo, h_hi))
    rows, const = _margin_rows(net, label)
    m_lo, m_hi = _widen(*_concretize(rows, const, h_lo.astype(np.float64), h_hi.astype(np.float64)))
    m_lo[label], m_hi[label] = np.inf, np.inf
    return NetBounds(tuple(pre), tuple(out), m_lo, m_hi, "interval")


def _relax(L: Layer, ulo: np.ndarray, uhi: np.ndarray, clo: np.ndarray, chi: np.ndarray):
    """Parallel lines ``al*u + bl <= act(u) <= au*u + bu`` on [ulo, uhi] (per neuron)."""
    n = len(ulo)
    if L.requant is None and not L.relu:
        return np.ones(n), np.zeros(n), np.ones(n), np.zeros(n)
    width = uhi - ulo
    stable = (chi - clo) <= 0
    lam = np.where(stable | (width <= 0), 0.0, (chi - clo) / np.where(width > 0, width, 1.0))
    if L.requant is not None:
        rq = L.requant

        def g_lo(t):
            return np.clip(t - 0.5 + rq.zero_point, rq.lo, rq.hi)

        def g_hi(t):
            return np.clip(t + 0.5 + rq.zero_point, rq.lo, rq.hi)

        bps_lo = [rq.lo - rq.zero_point + 0.5, rq.hi - rq.zero_point + 0.5]
        bps_hi = [rq.lo - rq.zero_point - 0.5, rq.hi - rq.zero_point - 0.5]
    else:
        def g_lo(t):
            return np.maximum(t, 0.0)

        g_hi = g_lo
        bps_lo = bps_hi = [0.0]

    def extreme(g, bps, fn):
        pts = [ulo, uhi] + [np.clip(np.full(n, b), ulo, uhi) for b in bps]
        vals = np.stack([g(t) - lam * t for t in pts])
        return fn(vals, axis=0)

    bl = extreme(g_lo, bps_lo, np.min)
    bu = extreme(g_hi, bps_hi, np.max)
    bl = np.where(stable, clo, bl)
    bu = np.where(stable, chi, bu)
    # never below the code interval's own lower line / above its upper line in value at the ends
    return lam, bl, lam.copy(), bu


def _scatter_cols(dst: np.ndarray, idx: np.ndarray, src: np.ndarray) -> None:
    """``dst[:, idx] += src`` with repeated indices accumulated."""
    if len(np.unique(idx)) == len(idx):
        dst[:, idx] += src
    else:
        np.add.at(dst.T, idx, src.T)


def _backsub(net: QNetwork, k: int, rows: np.ndarray, const: np.ndarray, relax, pools, box_lo, box_hi):
    """Lower bounds of ``rows @ h_k + const`` where h_k is the output of hidden layer k-1 (the input of layer k;
    k = 0 means the input box), back-substituted to the input."""
    R, c = rows.copy(), const.copy()
    for j in range(k - 1, -1, -1):
        L = net.layers[j]
        if L.pool is not None:  # through max pooling: R over pooled outputs -> over pre-pool activations
            sel_lo, dom, u_const = pools[j]
            Rp, Rn = np.maximum(R, 0.0), np.minimum(R, 0.0)
            n_pre = L.weight.shape[0]
            R2 = np.zeros((R.shape[0], n_pre))
            _scatter_cols(R2, sel_lo, Rp)
            has_dom = dom >= 0
            if has_dom.any():
                _scatter_cols(R2, dom[has_dom], Rn[:, has_dom])
            c = c + Rn[:, ~has_dom] @ u_const[~has_dom]
            R = R2
        al, bl, au, bu = relax[j]
        Rp, Rn = np.maximum(R, 0.0), np.minimum(R, 0.0)
        c = c + Rp @ bl + Rn @ bu
        R = Rp * al + Rn * au
        M, m0 = _affine(L, net, j)
        c = c + R @ m0
        R = R @ M
    pos, neg = np.maximum(R, 0.0), np.minimum(R, 0.0)
    return c + pos @ box_lo + neg @ box_hi


def linear_bounds(net: QNetwork, lo: np.ndarray, hi: np.ndarray, label: int,
                  base: NetBounds | None = None) -> NetBounds:
    """CROWN-style back-substitution bounds, intersected with the interval bounds ``base``."""
    base = base or interval_bounds(net, lo, hi, label)
    box_lo, box_hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    pre, out, relax, pools = [], [], [], []
    for k, L in enumerate(net.layers[:-1]):
        b_lo, b_hi = base.pre[k]
        M, m0 = _affine(L, net, k)
        if k == 0:
            u_lo, u_hi = b_lo, b_hi
        else:
            l_lin = _backsub(net, k, M, m0, relax, pools, box_lo, box_hi)
            h_lin = -_backsub(net, k, -M, -m0, relax, pools, box_lo, box_hi)
            l_lin, h_lin = _widen(l_lin, h_lin)
            u_lo, u_hi = np.maximum(b_lo, l_lin), np.minimum(b_hi, h_lin)
            u_hi = np.maximum(u_hi, u_lo)
        pre.append((u_lo, u_hi))
        c_lo, c_hi = _act_bounds(L, u_lo, u_hi)
        relax.append(_relax(L, u_lo, u_hi, c_lo.astype(np.float64), c_hi.astype(np.float64)))
        if L.pool is not None:
            win_lo, win_hi = c_lo[L.pool], c_hi[L.pool]
            arg = np.argmax(win_lo, axis=1)
            sel = L.pool[np.arange(len(arg)), arg]
            best_lo = win_lo[np.arange(len(arg)), arg]
            others_hi = np.where(np.arange(L.pool.shape[1])[None, :] == arg[:, None], -np.inf, win_hi).max(axis=1)
            dom = np.where(best_lo >= others_hi, sel, -1)
            pools.append((sel, dom, win_hi.max(axis=1).astype(np.float64)))
        else:
            pools.append(None)
        h_lo, h_hi = _pool(L, c_lo, c_hi)
        out.append((h_lo, h_hi))
    rows, const = _margin_rows(net, label)
    k = len(net.layers) - 1
    m_lo = _backsub(net, k, rows, const, relax, pools, box_lo, box_hi)
    m_hi = -_backsub(net, k, -rows, -const, relax, pools, box_lo, box_hi)
    m_lo, m_hi = _widen(m_lo, m_hi)
    m_lo, m_hi = np.maximum(m_lo, base.margin_lo), np.minimum(m_hi, base.margin_hi)
    m_lo[label], m_hi[label] = np.inf, np.inf
    return NetBounds(tuple(pre), tuple(out), m_lo, m_hi, "linear")


def input_box(net: QNetwork, center: np.ndarray, eps: int) -> tuple[np.ndarray, np.ndarray]:
    """The L-infinity box of ``eps`` input steps around ``center`` codes, on the lattice [0, qmax]."""
    c = np.asarray(center, dtype=np.int64).reshape(-1)
    return np.clip(c - int(eps), 0, net.input_qmax), np.clip(c + int(eps), 0, net.input_qmax)


def exact_interval_margins(net: QNetwork, lo: np.ndarray, hi: np.ndarray, label: int) -> list:
    """Interval lower bounds on every margin ``y_c - y_j`` in exact arithmetic (Python integers and Fractions; no
    float rounding anywhere): the independent re-check of answers decided by the float64 interval bounds.
    Quantized layers use the exact half-to-even rounding of the exact extreme pre-activations (rounding is
    monotone, so these are the exact code ranges of each neuron taken alone)."""
    from fractions import Fraction

    h_lo = [int(v) if net.exact else Fraction(int(v)) for v in lo]
    h_hi = [int(v) if net.exact else Fraction(int(v)) for v in hi]
    last = len(net.layers) - 1
    for k, L in enumerate(net.layers):
        W = L.weight
        z = L.in_zero_point
        d_lo = [v - z for v in h_lo]
        d_hi = [v - z for v in h_hi]
        if k == last:
            def coef_of(j, i):
                w = int(W[j, i]) if net.exact else Fraction(float(W[j, i]))
                return Fraction(float(L.mult[j])) * w

            ys = []
            for j in range(W.shape[0]):
                if j == label:
                    ys.append(None)
                    continue
                m = Fraction(float(L.bias[label])) - Fraction(float(L.bias[j]))
                for i in range(W.shape[1]):
                    coef = coef_of(label, i) - coef_of(j, i)
                    if coef:
                        m += coef * (d_lo[i] if coef > 0 else d_hi[i])
                ys.append(m)
            return ys
        out_lo, out_hi = [], []
        for r in range(W.shape[0]):
            row = W[r]
            a_lo = a_hi = 0
            for i in np.flatnonzero(row):
                w = int(row[i]) if net.exact else Fraction(float(row[i]))
                if w > 0:
                    a_lo += w * d_lo[i]
                    a_hi += w * d_hi[i]
                else:
                    a_lo += w * d_hi[i]
                    a_hi += w * d_lo[i]
            A, B = Fraction(float(L.mult[r])), Fraction(float(L.bias[r]))
            y_lo, y_hi = (A * a_lo + B, A * a_hi + B) if A >= 0 else (A * a_hi + B, A * a_lo + B)
            if L.requant is not None:
                rq = L.requant
                inv = Fraction(float(rq.inv_scale))
                c_lo = min(max(round(y_lo * inv) + rq.zero_point, rq.lo), rq.hi)
                c_hi = min(max(round(y_hi * inv) + rq.zero_point, rq.lo), rq.hi)
            elif L.relu:
                c_lo, c_hi = max(y_lo, 0), max(y_hi, 0)
            else:
                c_lo, c_hi = y_lo, y_hi
            out_lo.append(c_lo)
            out_hi.append(c_hi)
        if L.pool is not None:
            out_lo = [max(out_lo[w] for w in win) for win in L.pool]
            out_hi = [max(out_hi[w] for w in win) for win in L.pool]
        h_lo, h_hi = out_lo, out_hi
    raise AssertionError("unreachable")
