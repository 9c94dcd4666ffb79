"""Solver statuses and proven lower bounds shared by every partitioning method.

Every solve reports how it ended (``tasks.solver.SolveStatus``, re-exported here) and what it proved; a lower bound
is never a bare float. ``Bound.value`` is a proven lower bound on the optimal bottleneck (ms) of the instance it was
computed for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from forgeflow.tasks.solver import MEMORY_RTOL, PROVEN_RTOL, SolveStatus, is_proven

__all__ = ["Bound", "ImprovedPlan", "MEMORY_RTOL", "PROVEN_RTOL", "COST_RTOL", "SolveStatus", "is_proven"]

#: relative slack when comparing two sums of the same float costs (a stage cost with a cap, work windows)
COST_RTOL = 1e-9


@dataclass(frozen=True)
class ImprovedPlan:
    """A plan found while proving a bound (e.g. by a bottleneck-guessing MIP) that beats the plan the bound was
    asked to certify: node -> stage ``assignment`` (not yet validated: callers pass it through ``Plan.checked``),
    its ``bottleneck`` (ms) as the solver computed it, and the ``method`` that found it."""

    bottleneck: float
    assignment: tuple[int, ...]
    method: str


@dataclass(frozen=True)
class Bound:
    """A proven lower bound ``value`` (ms) on the optimal bottleneck, the ``method`` that proved it, how the
    method's solve ended, its wall time in seconds, method-specific details (solver gap, node count, ...), and
    ``improved``: a better plan than the one the bound was computed against, when the bound's solve found one."""

    value: float
    method: str
    status: SolveStatus
    seconds: float
    detail: Mapping[str, Any] = field(default_factory=dict)
    improved: ImprovedPlan | None = None
