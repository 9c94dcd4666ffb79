"""Solver statuses and proven lower bounds shared by every partitioning method.

Every solve reports how it ended (``tasks.solver.SolveStatus``, re-exported here) and what it proved; a lower bound
is never a bare float. ``Bound.value`` is a proven lower bound on the optimal bottleneck (ms) of the instance it was
computed for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from tasks.solver import SolveStatus

__all__ = ["Bound", "SolveStatus"]


@dataclass(frozen=True)
class Bound:
    """A proven lower bound ``value`` (ms) on the optimal bottleneck, the ``method`` that proved it, how the
    method's solve ended, its wall time in seconds, and method-specific details (solver gap, node count, ...)."""

    value: float
    method: str
    status: SolveStatus
    seconds: float
    detail: Mapping[str, Any] = field(default_factory=dict)
