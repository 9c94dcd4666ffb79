"""The scoreboard of one certified search: the best valid plan and the best proven lower bound so far, every
method's run, and the trace of how both improved.

The partition solve (``tasks.partition.solve``) and the joint planner (``tasks.plan.solve``) keep their incumbents
this one way: a plan counts only after the independent validator has checked it (the caller's ``offer``), it
replaces the incumbent only when it is better by more than ``COST_RTOL``, a bound counts only with a usable status
and a finite value, and ``closed()`` uses the one optimality threshold every result reports (``is_proven``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from forgeflow.tasks.partition.result import MethodRun
from forgeflow.tasks.partition.status import COST_RTOL, Bound, SolveStatus, is_proven


class Incumbent:
    """Best plan (anything with a ``bottleneck``) and best bound so far; subclasses validate what they are offered."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.perf_counter() if t0 is None else t0
        self.plan: Any = None
        self.bound: Bound | None = None
        self.runs: list[MethodRun] = []
        #: (seconds since the start, best plan's bottleneck, best bound) each time either improved
        self.trace: list[tuple[float, float, float]] = []

    def _mark(self) -> None:
        self.trace.append((time.perf_counter() - self.t0, self.ub, self.lb))

    def keep(self, plan: Any) -> None:
        """Make the validated ``plan`` the incumbent when it beats the current one by more than ``COST_RTOL``."""
        if self.plan is None or plan.bottleneck < self.plan.bottleneck * (1 - COST_RTOL):
            self.plan = plan
            self._mark()

    def offer_bound(self, bound: Bound) -> None:
        if bound.status in (SolveStatus.ERROR, SolveStatus.NOT_RUN) or not math.isfinite(bound.value):
            return
        if self.bound is None or bound.value > self.bound.value:
            self.bound = bound
            self._mark()

    @property
    def ub(self) -> float:
        return self.plan.bottleneck if self.plan is not None else math.inf

    @property
    def lb(self) -> float:
        return self.bound.value if self.bound is not None else 0.0

    def closed(self) -> bool:
        return self.plan is not None and is_proven(self.ub, self.lb)
