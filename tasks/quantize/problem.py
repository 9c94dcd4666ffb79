"""The mixed-precision bit-allocation problem as plain arrays.

Each layer ``i`` takes one bit width from the candidate list ``bits`` (``FLOAT_BITS`` = 32 means "keep float").
Choosing width ``bits[k]`` for layer ``i`` costs ``cost[i, k]`` in the objective (the Hessian trace times the squared
weight perturbation ||Q_b(W) - W||^2, HAWQ-V2/V3's second-order loss estimate) and uses ``size_bytes[i, k]`` bytes
of weights, ``bops[i, k]`` bit-operations (MACs x weight bits x activation bits) and ``latency_ms[i, k]`` ms
(a per-layer, per-bit table from profiling or supplied by the user). ``allowed[i, k]`` is False where a width is not
available for a layer (e.g. no latency measured at that width). Ties are groups of layers that must share one width;
pins fix a layer's width. Budgets are upper bounds on the summed resources plus ``base`` (the part no plan changes,
such as BatchNorm parameters in the model size); any subset of them may be set.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from forgeflow.tasks.quantize.errors import QuantizeError, UnknownLayerError
from forgeflow.tasks.solver import FEASIBILITY_TOL

FLOAT_BITS = 32
RESOURCES = ("size_bytes", "bops", "latency_ms")
RESOURCE_WORDS = {"size_bytes": ("model size", "bytes"), "bops": ("BOPs", "bit-operations"),
                  "latency_ms": ("latency", "ms")}


@dataclass(frozen=True)
class AllocationProblem:
    """An instance. Arrays are (n_layers, n_bits); index ``k`` refers to ``bits[k]``."""

    layers: tuple[str, ...]
    bits: tuple[int, ...]
    cost: np.ndarray
    size_bytes: np.ndarray
    bops: np.ndarray | None = None
    latency_ms: np.ndarray | None = None
    allowed: np.ndarray | None = None
    ties: tuple[tuple[str, ...], ...] = ()
    pinned: Mapping[str, int] = field(default_factory=dict)
    budgets: Mapping[str, float] = field(default_factory=dict)  # resource name -> upper bound
    base: Mapping[str, float] = field(default_factory=dict)  # resource use no plan changes (e.g. BatchNorm bytes)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.layers)

    def table(self, resource: str) -> np.ndarray | None:
        return getattr(self, resource)

    def allowed_mask(self) -> np.ndarray:
        if self.allowed is None:
            return np.ones((self.n, len(self.bits)), dtype=bool)
        return np.asarray(self.allowed, dtype=bool)

    def with_budgets(self, **budgets: float | None) -> "AllocationProblem":
        """A copy with the given budgets replaced (None removes one)."""
        merged = dict(self.budgets)
        for k, v in budgets.items():
            if k not in RESOURCES:
                raise QuantizeError(f"unknown budget {k!r}; known: {', '.join(RESOURCES)}")
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = float(v)
        return replace(self, budgets=merged)

    def validate(self) -> "AllocationProblem":
        """Check shapes, names, ties, pins and budgets; raise QuantizeError / UnknownLayerError naming the problem."""
        n, nb = self.n, len(self.bits)
        if n == 0:
            raise QuantizeError("the allocation problem has no layers")
        if len(set(self.layers)) != n:
            dup = sorted({x for x in self.layers if self.layers.count(x) > 1})
            raise QuantizeError(f"duplicate layer names: {', '.join(dup)}")
        if nb == 0 or len(set(self.bits)) != nb or any(int(b) != b or not 1 <= b <= FLOAT_BITS for b in self.bits):
            raise QuantizeError(f"bit widths must be distinct integers in 1..{FLOAT_BITS}; got {list(self.bits)}")
        for name in ("cost", "size_bytes", "bops", "latency_ms", "allowed"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.shape != (n, nb):
                raise QuantizeError(f"{name} has shape {arr.shape}; expected (layers, bits) = {(n, nb)}")
            if name != "allowed":
                ok = self.allowed_mask()
                vals = arr[ok]
                if not np.all(np.isfinite(vals)):
                    raise QuantizeError(f"{name} has non-finite entries for allowed (layer, bits) pairs")
                if np.any(vals < 0):
                    raise QuantizeError(f"{name} has negative entries")
        known = set(self.layers)
        for group in self.ties:
            unknown = [x for x in group if x not in known]
            if unknown:
                raise UnknownLayerError(f"tie names unknown layer(s) {', '.join(map(repr, unknown))}; "
                                        f"known layers: {', '.join(self.layers[:8])}{' ...' if n > 8 else ''}")
        for name, b in self.pinned.items():
            if name not in known:
                raise UnknownLayerError(f"pin names unknown layer {name!r}; known layers: "
                                        f"{', '.join(self.layers[:8])}{' ...' if n > 8 else ''}")
            if b not in self.bits:
                raise QuantizeError(f"layer {name!r} is pinned to {b} bits, which is not a candidate "
                                    f"width ({', '.join(map(str, self.bits))})")
        for resource, value in self.budgets.items():
            if resource not in RESOURCES:
                raise QuantizeError(f"unknown budget {resource!r}; known: {', '.join(RESOURCES)}")
            if self.table(resource) is None:
                word = RESOURCE_WORDS[resource][0]
                raise QuantizeError(f"a {word} budget was given but the problem has no per-layer {word} table")
            if not np.isfinite(value) or value < 0:
                raise QuantizeError(f"{resource} budget must be a finite number >= 0; got {value}")
        return self

    def groups(self) -> list[list[int]]:
        """Layers that must share a width (ties closed transitively), in first-layer order; singletons included."""
        index = {x: i for i, x in enumerate(self.layers)}
        parent = list(range(self.n))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for group in self.ties:
            ids = [index[x] for x in group]
            for j in ids[1:]:
                ra, rb = find(ids[0]), find(j)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        out: dict[int, list[int]] = {}
        for i in range(self.n):
            out.setdefault(find(i), []).append(i)
        return sorted(out.values(), key=lambda g: g[0])

    def plan_totals(self, plan: Mapping[str, int] | Sequence[int]) -> dict[str, float]:
        """Objective and resource totals of a plan (layer -> bits, or bits in layer order)."""
        bits = [plan[x] for x in self.layers] if isinstance(plan, Mapping) else list(plan)
        if len(bits) != self.n:
            raise QuantizeError(f"a plan needs {self.n} widths; got {len(bits)}")
        col = {b: k for k, b in enumerate(self.bits)}
        try:
            ks = np.array([col[int(b)] for b in bits])
        except KeyError as exc:
            raise QuantizeError(f"plan uses width {exc.args[0]} which is not a candidate ({list(self.bits)})") from None
        rows = np.arange(self.n)
        out = {"objective": float(np.asarray(self.cost)[rows, ks].sum())}
        for r in RESOURCES:
            t = self.table(r)
            out[r] = float(np.asarray(t)[rows, ks].sum()) + float(self.base.get(r, 0.0)) if t is not None \
                else float("nan")
        return out

    def plan_is_admissible(self, plan: Mapping[str, int] | Sequence[int], rel_tol: float = FEASIBILITY_TOL) -> bool:
        """Whether a plan meets allowed widths, pins, ties and every budget (to ``rel_tol`` of the budget)."""
        bits = [plan[x] for x in self.layers] if isinstance(plan, Mapping) else list(plan)
        col = {b: k for k, b in enumerate(self.bits)}
        mask = self.allowed_mask()
        if any(b not in col or not mask[i, col[b]] for i, b in enumerate(bits)):
            return False
        if any(bits[self.layers.index(x)] != b for x, b in self.pinned.items()):
            return False
        if any(len({bits[i] for i in g}) > 1 for g in self.groups()):
            return False
        totals = self.plan_totals(bits)
        return all(totals[r] <= v + rel_tol * max(abs(v), 1.0) for r, v in self.budgets.items())


def uniform_plan(problem: AllocationProblem, bits: int) -> dict[str, int]:
    """Every layer at ``bits``, except pinned layers (which keep their pin)."""
    return {x: int(problem.pinned.get(x, bits)) for x in problem.layers}
