"""Pareto fronts, non-dominated sorting, crowding distance and exact 2-D hypervolume.

Convention: every objective is MINIMISED (pass ``-accuracy`` for accuracy). Arrays are ``(n, m)`` float arrays,
one row per point. Hypervolumes are measured against a reference point ``ref`` that every counted point must
strictly dominate; points that do not are ignored (they contribute nothing).
"""

from __future__ import annotations

import numpy as np


def _as_points(points) -> np.ndarray:
    f = np.asarray(points, dtype=float)
    if f.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n, m), got shape {f.shape}")
    return f


def non_dominated_mask(points) -> np.ndarray:
    """Boolean mask of the points that no other point dominates (duplicates of a front point are all kept)."""
    f = _as_points(points)
    n, m = f.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if m == 2:
        # Sort by the first objective, then the second; a point is on the front iff its second objective is
        # strictly below every earlier point's (ties in both objectives keep each other).
        order = np.lexsort((f[:, 1], f[:, 0]))
        mask = np.zeros(n, dtype=bool)
        best = np.inf
        prev = None
        for i in order:
            y = f[i, 1]
            if y < best or (prev is not None and np.array_equal(f[i], f[prev]) and mask[prev]):
                mask[i] = True
                best = min(best, y)
                prev = i
        return mask
    le = np.all(f[:, None, :] <= f[None, :, :], axis=2)
    lt = np.any(f[:, None, :] < f[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    return ~dominated


def non_dominated_ranks(points) -> np.ndarray:
    """NSGA-II front index of every point: 0 for the non-dominated set, 1 for the next front after removing it, ..."""
    f = _as_points(points)
    ranks = np.full(len(f), -1, dtype=int)
    remaining = np.arange(len(f))
    rank = 0
    while remaining.size:
        mask = non_dominated_mask(f[remaining])
        ranks[remaining[mask]] = rank
        remaining = remaining[~mask]
        rank += 1
    return ranks


def crowding_distance(points) -> np.ndarray:
    """NSGA-II crowding distance within one front; boundary points get +inf."""
    f = _as_points(points)
    n, m = f.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(f[:, j], kind="stable")
        span = f[order[-1], j] - f[order[0], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (f[order[2:], j] - f[order[:-2], j]) / span
    return dist


def _staircase(points: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D front of ``points`` inside ``ref`` as (x ascending, y descending) arrays."""
    inside = np.all(points < ref, axis=1)
    p = points[inside]
    if len(p) == 0:
        return np.zeros(0), np.zeros(0)
    p = p[non_dominated_mask(p)]
    order = np.lexsort((p[:, 1], p[:, 0]))
    p = p[order]
    # drop exact duplicates so that the staircase is strictly monotone
    keep = np.ones(len(p), dtype=bool)
    keep[1:] = np.any(np.diff(p, axis=0) != 0, axis=1)
    p = p[keep]
    return p[:, 0], p[:, 1]


def hypervolume_2d(points, ref) -> float:
    """Exact hypervolume (area) dominated by ``points`` and bounded by ``ref``, both objectives minimised."""
    f = _as_points(points)
    r = np.asarray(ref, dtype=float)
    if f.shape[1] != 2 or r.shape != (2,):
        raise ValueError("hypervolume_2d needs 2 objectives and a 2-D reference point")
    x, y = _staircase(f, r)
    if x.size == 0:
        return 0.0
    widths = np.diff(np.append(x, r[0]))
    return float(np.sum(widths * (r[1] - y)))


def hypervolume_improvement_2d(front, candidates, ref) -> np.ndarray:
    """Exact hypervolume gained by adding each candidate ALONE to ``front`` (vectorised, O((n + k) log n)).

    The current front's attainment surface is a staircase: for x in [x_j, x_{j+1}) the best second objective is
    y_j (descending in j). A candidate (cx, cy) gains the area between y = cy and that staircase for x in [cx, ref_x),
    i.e. sum over the steps at or right of cx whose level is above cy.
    """
    c = _as_points(candidates)
    r = np.asarray(ref, dtype=float)
    fx, fy = _staircase(_as_points(front) if len(front) else np.zeros((0, 2)), r)
    cx = np.minimum(c[:, 0], r[0])
    cy = np.minimum(c[:, 1], r[1])
    if fx.size == 0:
        return np.maximum(r[0] - cx, 0) * np.maximum(r[1] - cy, 0)
    # Steps: boundaries b_0 = -inf (level ref_y), b_1 = fx_0 (level fy_0), ...; segment j spans [b_j, b_{j+1}).
    bounds = np.concatenate(([-np.inf], fx, [r[0]]))
    levels = np.concatenate(([r[1]], fy))  # non-increasing
    lengths = np.diff(bounds)[1:]  # finite lengths of segments 1..n
    # cumulative sums over segments 1..n of length and length*level, from the right
    seg_levels = levels[1:]
    cum_len = np.concatenate(([0.0], np.cumsum(lengths)))
    cum_area = np.concatenate(([0.0], np.cumsum(lengths * seg_levels)))
    # first segment index containing cx (0 = the unbounded left segment)
    start = np.searchsorted(fx, cx, side="right")  # segment index s: bounds[s] <= cx < bounds[s+1]
    # segments with level > cy contribute; levels are non-increasing so that is a prefix: segments < stop
    stop = np.searchsorted(-levels, -cy, side="left")  # first segment whose level <= cy
    gain = np.zeros(len(c))
    ok = stop > start
    s, e, x0, y0 = start[ok], stop[ok], cx[ok], cy[ok]
    # partial first segment: from cx to its right bound
    right = bounds[s + 1]
    first = (np.minimum(right, r[0]) - x0) * (levels[s] - y0)
    # full segments s+1 .. e-1 (all have index >= 1)
    lo, hi = s, e - 1  # in cum arrays, segment j (1-based) occupies cum[j] - cum[j-1]
    full_len = cum_len[hi] - cum_len[lo]
    full_area = cum_area[hi] - cum_area[lo]
    gain[ok] = first + (full_area - y0 * full_len)
    return np.maximum(gain, 0.0)
