"""Build an AllocationProblem for a torch model from its layers, sensitivities and an optional latency table.

Per layer ``i`` and width ``b`` (32 = keep float):
- cost      = Omega_i(b) = max(tr(H_i) / n_i, 0) * ||Q_b(W_i) - W_i||^2;
- size      = LayerInfo.size_bytes(b) (packed weights + float32 per-channel scales + float32 bias), and the float32
              bytes of every other parameter/buffer as the plan-independent ``base``;
- BOPs      = MACs_i * b * a where a is the activation width (32 for a float layer, whose inputs stay float);
- latency   = the supplied table's ms for (layer, b); widths missing from the table are not allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from forgeflow.tasks.quantize.errors import QuantizeError, UnknownLayerError
from forgeflow.tasks.quantize.layers import LayerInfo
from forgeflow.tasks.quantize.problem import FLOAT_BITS, AllocationProblem
from forgeflow.tasks.quantize.sensitivity import LayerSensitivity


def parse_bits(text: str | Sequence[int], keep_float: bool = True) -> tuple[int, ...]:
    """'2,3,4,8' -> (2, 3, 4, 8, 32): candidate widths, sorted, plus float unless ``keep_float`` is False."""
    try:
        raw = [int(t) for t in text.split(",") if t.strip()] if isinstance(text, str) else [int(t) for t in text]
    except ValueError:
        raise QuantizeError(f"--bits must be a comma-separated list of integers like 2,3,4,8; got {text!r}") from None
    bad = [b for b in raw if not (2 <= b <= 16 or b == FLOAT_BITS)]
    if not raw or bad:
        raise QuantizeError(f"bit widths must be in 2..16 (or 32 for float); got {text!r}")
    return tuple(sorted(set(raw) | ({FLOAT_BITS} if keep_float else set())))


def load_latency_table(path: str | Path) -> dict[str, dict[int, float]]:
    """A per-layer, per-width latency table: JSON ``{"layer": {"4": ms, "8": ms, "32": ms}}`` or CSV with columns
    ``layer,bits,latency_ms``."""
    p = Path(path)
    if not p.exists():
        raise QuantizeError(f"latency table not found: {p}")
    out: dict[str, dict[int, float]] = {}
    try:
        if p.suffix.lower() == ".csv":
            import csv

            with p.open() as f:
                for row in csv.DictReader(f):
                    out.setdefault(row["layer"], {})[int(row["bits"])] = float(row["latency_ms"])
        else:
            for layer, per_bits in json.loads(p.read_text()).items():
                out[layer] = {int(b): float(v) for b, v in per_bits.items()}
    except (KeyError, ValueError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise QuantizeError(f"latency table {p} must be JSON {{layer: {{bits: ms}}}} or CSV layer,bits,latency_ms: "
                            f"{type(exc).__name__}: {exc}") from None
    return out


def model_problem(layers: Sequence[LayerInfo], sensitivities: Sequence[LayerSensitivity], bits: Sequence[int],
                  act_bits: int = 8, base_bytes: float = 0.0,
                  latency_ms: Mapping[str, Mapping[int, float]] | None = None,
                  ties: Sequence[Sequence[str]] = (), pinned: Mapping[str, int] | None = None,
                  budgets: Mapping[str, float] | None = None) -> AllocationProblem:
    """The allocation problem of a model (validated)."""
    bits = tuple(int(b) for b in bits)
    sens = {s.name: s for s in sensitivities}
    missing = [x.name for x in layers if x.name not in sens]
    if missing:
        raise QuantizeError(f"no sensitivity for layer(s) {', '.join(missing)}")
    names = tuple(x.name for x in layers)
    n, nb = len(layers), len(bits)
    cost = np.zeros((n, nb))
    size = np.zeros((n, nb))
    bops = np.zeros((n, nb))
    allowed = np.ones((n, nb), dtype=bool)
    for i, info in enumerate(layers):
        s = sens[info.name]
        for k, b in enumerate(bits):
            if b not in s.perturbation:
                raise QuantizeError(f"sensitivity of {info.name} has no perturbation at {b} bits")
            cost[i, k] = s.cost(b)
            size[i, k] = info.size_bytes(b)
            a = FLOAT_BITS if b >= FLOAT_BITS else act_bits
            bops[i, k] = float(info.macs) * b * a
    lat = None
    if latency_ms is not None:
        unknown = sorted(set(latency_ms) - set(names))
        if unknown:
            raise UnknownLayerError(f"latency table names unknown layer(s) {', '.join(map(repr, unknown[:5]))}")
        absent = [x for x in names if x not in latency_ms]
        if absent:
            raise QuantizeError(f"latency table has no entry for layer(s) {', '.join(absent[:5])}")
        lat = np.zeros((n, nb))
        for i, x in enumerate(names):
            for k, b in enumerate(bits):
                if b in latency_ms[x]:
                    lat[i, k] = float(latency_ms[x][b])
                else:
                    allowed[i, k] = False
    return AllocationProblem(
        layers=names, bits=bits, cost=cost, size_bytes=size, bops=bops, latency_ms=lat, allowed=allowed,
        ties=tuple(tuple(t) for t in ties), pinned=dict(pinned or {}), budgets=dict(budgets or {}),
        base={"size_bytes": float(base_bytes)}, meta={"act_bits": act_bits},
    ).validate()
