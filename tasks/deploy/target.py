"""What `forgeflow optimize` needs to know of a hardware target file, as one frozen view.

Target files (``deploy/targets/*.yaml``) are validated by the joint planner's own model when it is installed
(``tasks.plan.target``); ``view_of`` reduces either that model or the plain mapping read here to a ``TargetView``.
A bad file is one line naming the field (``TargetError``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tasks.errors import ForgeflowError

#: where the shipped targets live (a checkout or an editable install)
TARGETS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "targets"


class TargetError(ForgeflowError):
    """A target file that is missing or malformed, or a target no subnet fits."""


@dataclass(frozen=True)
class TargetView:
    name: str
    k: int
    memory_bytes: tuple[float, ...]
    speed: tuple[float, ...]  # time on the device = time on the profiling host x speed
    bit_speedup: Mapping[int, float]  # width -> speed-up against float (float = 1)
    bits: tuple[int, ...]  # widths the devices run (32 = float always allowed)
    link_gbps: float
    link_latency_ms: float
    budget_fraction: float | None  # sensitivity budget as a fraction of the uniform-4-bit sum (None: no budget)
    latency_limit_ms: float | None  # certified bottleneck limit per microbatch (None: no limit)
    min_accuracy_pct: float | None
    microbatch: int
    source: str
    raw: Mapping[str, Any] = field(default_factory=dict)

    def transfer_ms(self, nbytes: float) -> float:
        return nbytes * 8 / (self.link_gbps * 1e9) * 1e3 + self.link_latency_ms

    def sensitivity_budget(self, units: Sequence) -> float | None:
        if self.budget_fraction is None:
            return None
        return self.budget_fraction * float(sum(u.sensitivity_at.get(4, 0.0) for u in units))

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "memory_bytes": list(self.memory_bytes), "speed": list(self.speed),
                "bit_speedup": {str(b): v for b, v in self.bit_speedup.items()}, "bits": list(self.bits),
                "link_gbps": self.link_gbps, "link_latency_ms": self.link_latency_ms,
                "budget_fraction": self.budget_fraction, "latency_limit_ms": self.latency_limit_ms,
                "min_accuracy_pct": self.min_accuracy_pct, "microbatch": self.microbatch, "source": self.source,
                "digest": self.digest}


def resolve_target_path(spec: str) -> Path:
    """A path, or the name of a shipped target (``edge-npu-4x`` -> deploy/targets/edge-npu-4x.yaml)."""
    p = Path(spec)
    if p.exists():
        return p
    for cand in (TARGETS_DIR / spec, TARGETS_DIR / f"{spec}.yaml"):
        if cand.exists():
            return cand
    shipped = ", ".join(sorted(q.stem for q in TARGETS_DIR.glob("*.yaml"))) or "none"
    raise TargetError(f"target file not found: {spec} (shipped targets: {shipped})")


def _num(d: Mapping[str, Any], key: str, where: str, positive: bool = True) -> float:
    try:
        v = float(d[key])
    except KeyError:
        raise TargetError(f"target {where}: missing field {key!r}") from None
    except (TypeError, ValueError):
        raise TargetError(f"target {where}: field {key!r} must be a number, got {d[key]!r}") from None
    if positive and not v > 0:
        raise TargetError(f"target {where}: field {key!r} must be > 0, got {v:g}")
    return v


def view_of(data: Mapping[str, Any], source: str) -> TargetView:
    """Reduce a target mapping to a ``TargetView``. Fields: ``name``; ``devices`` (``count`` + ``memory_bytes`` +
    ``speed``, or a list of ``{memory_bytes, speed}``); ``bit_speedup`` (width -> factor); ``link``
    (``bandwidth_gbps``, ``latency_ms``); optional ``budget`` (``fraction_of_uniform4``), ``limits``
    (``latency_ms``, ``min_accuracy_pct``) and ``microbatch``."""
    if not isinstance(data, Mapping):
        raise TargetError(f"target {source}: expected a mapping at the top level")
    devs = data.get("devices")
    if isinstance(devs, Mapping):
        count = int(_num(devs, "count", source))
        mem = (_num(devs, "memory_bytes", source),) * count
        speed = (float(devs.get("speed", 1.0)),) * count
    elif isinstance(devs, list) and devs:
        mem = tuple(_num(d, "memory_bytes", f"{source} device {i}") for i, d in enumerate(devs))
        speed = tuple(float(d.get("speed", 1.0)) for d in devs)
    else:
        raise TargetError(f"target {source}: missing field 'devices' (a count with memory_bytes, or a list)")
    speedup = {32: 1.0}
    for b, f in (data.get("bit_speedup") or {}).items():
        try:
            speedup[int(b)] = float(f)
        except (TypeError, ValueError):
            raise TargetError(f"target {source}: bit_speedup {b!r}: {f!r} is not a number") from None
    bits = tuple(sorted(set(int(b) for b in data.get("bits", speedup.keys())) | {32}))
    if any(b < 2 or b > 32 for b in bits):
        raise TargetError(f"target {source}: field 'bits' must hold widths in 2..32, got {list(bits)}")
    link = data.get("link") or {}
    budget = (data.get("budget") or {}).get("fraction_of_uniform4")
    limits = data.get("limits") or {}
    lat = limits.get("latency_ms")
    if lat is not None and not float(lat) > 0:
        raise TargetError(f"target {source}: limits.latency_ms must be > 0, got {lat!r}")
    acc = limits.get("min_accuracy_pct")
    return TargetView(
        name=str(data.get("name") or Path(source).stem), k=len(mem), memory_bytes=mem, speed=speed,
        bit_speedup=speedup, bits=bits, link_gbps=_num(link, "bandwidth_gbps", f"{source} link"),
        link_latency_ms=_num(link, "latency_ms", f"{source} link", positive=False),
        budget_fraction=None if budget is None else float(budget), latency_limit_ms=None if lat is None else float(lat),
        min_accuracy_pct=None if acc is None else float(acc), microbatch=int(data.get("microbatch", 32)),
        source=source, raw=dict(data))


def load_target(spec: str) -> TargetView:
    import yaml

    path = resolve_target_path(spec)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TargetError(f"target {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return view_of(data, str(path))
