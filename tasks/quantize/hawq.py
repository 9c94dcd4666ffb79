"""Allocation problems from HAWQ-V3's published ILP inputs (github.com/Zhen-Dong/HAWQ, ILP.ipynb, MIT licence).

The file lists per layer the Hutchinson trace, the squared weight perturbation at 4 and 8 bits, parameters
(millions, count / 2**20), BOPs at 32x32 bits (millions) and measured int4/int8 latencies (ms on a T4), plus tie
constraints and the configurations the authors shipped. HAWQ-V3's budgets interpolate between all-4-bit and
all-8-bit: ``budget = r4 + f * (r8 - r4)``. Sizes are converted to bytes (exact: a power-of-two scale), BOPs to
bit-operations at the chosen widths (``bops * 1e6 * b**2 / 1024``).

HAWQ-V3 states its objective as ``sum_i trace_i * (delta8_i - delta4_i) * [b_i == 8]``; our cost is
``sum_i trace_i * delta_{b_i}``, which differs from it by the constant ``sum_i trace_i * delta4_i``
(``hawq_objective`` converts).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from forgeflow.tasks.quantize.errors import QuantizeError
from forgeflow.tasks.quantize.problem import AllocationProblem

BUDGET_KINDS = {"modelsize": "size_bytes", "bops": "bops", "latency": "latency_ms"}


def hawq_problem(model: Mapping[str, Any], name: str = "") -> AllocationProblem:
    """The budget-free problem of one model entry of the HAWQ-V3 ILP file (widths 4 and 8)."""
    try:
        layers = model["layers"]
        names = tuple(model["layer_names"])
        trace = np.asarray(layers["Hutchinson_trace"], dtype=float)
        d4 = np.asarray(layers["delta_weights_4bit_square"], dtype=float)
        d8 = np.asarray(layers["delta_weights_8bit_square"], dtype=float)
        params = np.asarray(layers["parameters"], dtype=float)
        bops = np.asarray(layers["bops"], dtype=float)
        lat4 = np.asarray(layers["latency_int4"], dtype=float)
        lat8 = np.asarray(layers["latency_int8"], dtype=float)
        ties = tuple(tuple(names[i] for i in group) for group in model.get("ties", []))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise QuantizeError(f"HAWQ-V3 ILP entry {name!r} is malformed: {type(exc).__name__}: {exc}") from None
    return AllocationProblem(
        layers=names, bits=(4, 8),
        cost=np.stack([trace * d4, trace * d8], axis=1),
        size_bytes=np.stack([params * 2**20 * 4 / 8, params * 2**20 * 8 / 8], axis=1),
        bops=np.stack([bops * 1e6 * 16 / 1024, bops * 1e6 * 64 / 1024], axis=1),
        latency_ms=np.stack([lat4, lat8], axis=1),
        ties=ties, meta={"source": "HAWQ-V3 ILP", "model": name, "hawq_constant": float((trace * d4).sum())},
    ).validate()


def hawq_case(problem: AllocationProblem, case: str) -> AllocationProblem:
    """The problem with the budget of a shipped case, e.g. 'modelsize_0.5', 'bops_0.25', 'latency_0.75'."""
    try:
        kind, frac = case.rsplit("_", 1)
        resource, f = BUDGET_KINDS[kind], float(frac)
    except (KeyError, ValueError):
        raise QuantizeError(f"HAWQ-V3 case {case!r} is not '<modelsize|bops|latency>_<fraction>'") from None
    table = np.asarray(problem.table(resource))
    lo, hi = float(table[:, 0].sum()), float(table[:, 1].sum())
    return problem.with_budgets(**{resource: lo + f * (hi - lo)})


def hawq_objective(problem: AllocationProblem, objective: float) -> float:
    """Our objective converted to HAWQ-V3's (which drops the constant all-4-bit term)."""
    return objective - float(problem.meta["hawq_constant"])
