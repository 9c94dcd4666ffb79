"""The stage-assignment variables every pipeline MIP shares (partition's min-bottleneck model, the joint
placement-and-precision model): one formulation, built here once.

- ``x[g, s] = 1`` when group g sits in a stage <= s (cumulative, so ``x[g, k-1] = 1``); a group's stage indicator is
  ``y[g, s] = x[g, s] - x[g, s-1]``. Precedence (an edge g -> h) is ``x[g, s] >= x[h, s]``.
- A cap on the bottleneck fixes variables: a group whose ancestors' work exceeds (s+1) * cap cannot sit in a stage
  <= s, one whose descendants' work exceeds (k - s) * cap cannot sit in a stage >= s (``stage_windows``).
- Transfers of a node u with consumers t: ``out[u, s] >= y[u, s] - x[t, s]`` (u's output leaves stage s for a later
  stage) and ``in[u, s] >= y[t, s] - y[u, s]`` (it enters stage s from an earlier one); each carries u's transfer
  cost into stage s's load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forgeflow.tasks.partition.colocation import Groups
from forgeflow.tasks.partition.status import COST_RTOL
from forgeflow.tasks.solver import LinearModel


def bit_indices(mask: int) -> list[int]:
    """The indices of the set bits of ``mask`` (a group's ancestors or descendants)."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def stage_windows(groups: Groups, work: np.ndarray, k: int, cap: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(earliest, latest) stage of every group when no stage may carry more than ``cap`` of ``work`` (no cap: 0..k-1)."""
    G = groups.count
    earliest = np.zeros(G, dtype=np.int64)
    latest = np.full(G, k - 1, dtype=np.int64)
    if cap is None or cap <= 0:
        return earliest, latest
    for g in range(G):
        anc = work[g] + sum(work[h] for h in bit_indices(groups.ancestors[g]))
        desc = work[g] + sum(work[h] for h in bit_indices(groups.descendants[g]))
        earliest[g] = max(0, math.ceil(anc / cap - COST_RTOL) - 1)  # stages 0..s hold g and its ancestors
        latest[g] = min(k - 1, k - math.ceil(desc / cap - COST_RTOL))
    return earliest, latest


@dataclass(frozen=True)
class StageVars:
    """The columns of ``x[g, s]`` in a LinearModel; ``y(g, s)`` gives the terms of the stage indicator."""

    x: np.ndarray  # (G, k) column indices; x[:, k-1] fixed to 1

    def y(self, g: int, s: int, coef: float = 1.0) -> tuple[list[int], list[float]]:
        if s == 0:
            return [int(self.x[g, 0])], [coef]
        return [int(self.x[g, s]), int(self.x[g, s - 1])], [coef, -coef]


def add_stage_vars(mdl: LinearModel, groups: Groups, k: int, bottleneck: int, earliest: np.ndarray,
                   latest: np.ndarray, *, precedence: bool = True) -> StageVars:
    """Add x[g, s] with the windows' fixings and (unless ``precedence`` is off, for relaxations) the edges' rows. A
    window that is empty proves the cap too small: the model is made infeasible through the bottleneck column."""
    G = groups.count
    x = np.empty((G, k), dtype=np.int64)
    for g in range(G):
        for s in range(k):
            if s == k - 1:
                x[g, s] = mdl.add_var(1.0, 1.0)
            else:
                lo = 1.0 if s >= latest[g] else 0.0
                hi = 0.0 if s < earliest[g] else 1.0
                if lo > hi:  # the cap is provably too small: an empty row range makes the model infeasible
                    mdl.add_row([bottleneck], [1.0], lo=1.0, hi=0.0)
                    lo, hi = 0.0, 1.0
                x[g, s] = mdl.add_var(lo, hi, integer=True)
            if s > 0:
                mdl.add_row([x[g, s], x[g, s - 1]], [1.0, -1.0], lo=0.0)
    if precedence:
        for g, h in groups.edges:
            for s in range(k - 1):
                mdl.add_row([x[g, s], x[h, s]], [1.0, -1.0], lo=0.0)
    return StageVars(x)


def add_transfers(mdl: LinearModel, sv: StageVars, groups: Groups, cost: np.ndarray, k: int,
                  load_cols: list[list[int]], load_coefs: list[list[float]]) -> tuple[dict, dict]:
    """Add the transfer indicators of every sending node (out of stage s, into stage s) and their costs to each
    stage's load terms; returns ({(u, s): out column}, {(u, s): in column})."""
    out: dict = {}
    inn: dict = {}
    for u, targets in groups.senders:
        gu = int(groups.group_of[u])
        for s in range(k):
            if s < k - 1:
                col = mdl.add_var(0, 1)
                out[(u, s)] = col
                for t in targets:
                    cols, coefs = sv.y(gu, s)
                    mdl.add_row([col] + cols + [int(sv.x[t, s])], [1.0] + [-a for a in coefs] + [1.0], lo=0.0)
                load_cols[s].append(col)
                load_coefs[s].append(float(cost[u]))
            if s > 0:
                col = mdl.add_var(0, 1)
                inn[(u, s)] = col
                for t in targets:
                    ct, at = sv.y(t, s)
                    cu, au = sv.y(gu, s)
                    mdl.add_row([col] + ct + cu, [1.0] + [-a for a in at] + au, lo=0.0)
                load_cols[s].append(col)
                load_coefs[s].append(float(cost[u]))
    return out, inn
