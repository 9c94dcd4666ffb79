"""Solver statuses and proven lower bounds shared by every partitioning method.

Every solve reports how it ended (a string enum, linopy style) and what it proved; a lower bound is never a bare
float. ``Bound.value`` is a proven lower bound on the optimal bottleneck (ms) of the instance it was computed for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


class SolveStatus(str, Enum):
    """How a solve ended."""

    OPTIMAL = "optimal"  # proven optimal (for a bound: the bound equals the optimum or closes the gap asked for)
    FEASIBLE = "feasible"  # a solution or a valid bound, without a proof of optimality
    TIME_LIMIT = "time_limit"  # stopped at the time limit; any value reported is still valid
    INFEASIBLE = "infeasible"  # proven that no solution exists
    NOT_RUN = "not_run"  # skipped (too large, no time left, not applicable)
    ERROR = "error"  # the solver failed; the value carries no information beyond the trivial bound


@dataclass(frozen=True)
class Bound:
    """A proven lower bound ``value`` (ms) on the optimal bottleneck, the ``method`` that proved it, how the
    method's solve ended, its wall time in seconds, and method-specific details (solver gap, node count, ...)."""

    value: float
    method: str
    status: SolveStatus
    seconds: float
    detail: Mapping[str, Any] = field(default_factory=dict)
