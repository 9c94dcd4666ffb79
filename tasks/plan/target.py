"""Hardware target files (``deploy/targets/*.yaml``): the devices a model is deployed on, as one validated model.

A target declares the pipelined devices (``count`` equal ones, or a list: stage i runs on device i), each with its
memory in bytes, its time per operator (a ``speed_factor`` against the profiling host: device ms = host ms x factor,
a per-op ``latency_table`` file, or a ``latency_model``: the name of a device fitted by ``forgeflow latency fit`` in the
run's catalog, which predicts each candidate architecture's whole-network latency, with its uncertainty) and the speed-up of each weight bit width over float (a width without kernels on
the device runs at float speed but still saves memory); the links between consecutive devices (bandwidth, latency);
the objective (``throughput``: minimise the bottleneck stage) and the quantization budget (the largest allowed sum
of Hessian-weighted perturbations, ``max_sensitivity``, or a ``fraction_of_uniform4`` of the sum at uniform 4 bits).

``load_target(path)`` raises :class:`TargetError` with one line naming the offending field.
"""

from __future__ import annotations

import csv
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgeflow.tasks.errors import ForgeflowError

FLOAT_BITS = 32
TARGETS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "targets"


class TargetError(ForgeflowError):
    """A hardware target file that is missing, unreadable or invalid (the message names the field)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Device(_Strict):
    """One accelerator. ``bit_speedup[b]`` is how many times faster a layer with b-bit weights runs than in float."""

    name: str = "device"
    memory_bytes: float = Field(gt=0)
    speed_factor: float = Field(1.0, gt=0)
    latency_table: Optional[str] = None
    latency_model: Optional[str] = None  # a device fitted by `forgeflow latency fit` (catalog table latency_devices)
    bit_speedup: dict[int, float] = Field(default_factory=dict)

    @field_validator("latency_model")
    @classmethod
    def _model_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.strip():
            raise ValueError("name a device fitted by `forgeflow latency fit` (an empty name was given)")
        return None if v is None else v.strip()

    @model_validator(mode="after")
    def _one_latency_source(self) -> "Device":
        # checked by value (a dumped and re-read target carries the defaults): a speed factor other than 1 or a
        # latency table beside a fitted model would be silently ignored
        if self.latency_model is not None:
            given = [f for f, v in (("latency_table", self.latency_table), ("speed_factor", self.speed_factor != 1.0))
                     if v]
            if given:
                raise ValueError(f"latency_model: give one latency source, latency_model or {given[0]}, not both")
        return self

    @field_validator("bit_speedup")
    @classmethod
    def _speedups(cls, v: dict[int, float]) -> dict[int, float]:
        for b, s in v.items():
            if not 1 <= int(b) <= FLOAT_BITS:
                raise ValueError(f"bit width {b} is outside 1..{FLOAT_BITS}")
            if not s > 0:
                raise ValueError(f"speed-up of {b}-bit weights must be > 0, got {s}")
        return {int(b): float(s) for b, s in v.items()}

    def speedup(self, bits: int) -> float:
        return 1.0 if bits >= FLOAT_BITS else float(self.bit_speedup.get(int(bits), 1.0))


class EqualDevices(Device):
    """``count`` identical devices."""

    count: int = Field(ge=1, le=64)


class Link(_Strict):
    bandwidth_bytes_per_s: float = Field(gt=0)
    latency_ms: float = Field(0.0, ge=0)

    def transfer_ms(self, nbytes: float) -> float:
        return self.latency_ms + 1e3 * float(nbytes) / self.bandwidth_bytes_per_s


class QuantBudget(_Strict):
    """Exactly one of an absolute sensitivity budget or a fraction of the uniform-4-bit sensitivity."""

    max_sensitivity: Optional[float] = Field(None, ge=0)
    fraction_of_uniform4: Optional[float] = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> "QuantBudget":
        if (self.max_sensitivity is None) == (self.fraction_of_uniform4 is None):
            raise ValueError("give exactly one of max_sensitivity or fraction_of_uniform4")
        return self


class HardwareTarget(_Strict):
    name: str
    description: str = ""
    devices: Union[EqualDevices, list[Device]]
    links: Union[Link, list[Link]]
    objective: Literal["throughput"] = "throughput"
    budget: QuantBudget

    @field_validator("devices")
    @classmethod
    def _nonempty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("list at least one device")
        return v

    @model_validator(mode="after")
    def _links(self) -> "HardwareTarget":
        if isinstance(self.links, list) and len(self.links) not in (1, max(len(self.device_list) - 1, 1)):
            raise ValueError(f"links: give one link or one per pair of consecutive devices "
                             f"({len(self.device_list) - 1}), got {len(self.links)}")
        return self

    @cached_property
    def device_list(self) -> tuple[Device, ...]:
        if isinstance(self.devices, EqualDevices):
            d = self.devices.model_dump(exclude={"count"})
            return tuple(Device(**d) for _ in range(self.devices.count))
        return tuple(self.devices)

    @property
    def k(self) -> int:
        return len(self.device_list)

    @property
    def homogeneous(self) -> bool:
        return len({d.model_dump_json(exclude={"name"}) for d in self.device_list}) == 1

    @property
    def slowest_link(self) -> Link:
        """Transfers are priced on the slowest link (msr's cost model charges one cost per output, whatever link it
        takes), so a plan's communication is never under-estimated."""
        links = self.links if isinstance(self.links, list) else [self.links]
        return min(links, key=lambda ln: (ln.bandwidth_bytes_per_s, -ln.latency_ms))

    def with_latency_model(self, name: str) -> "HardwareTarget":
        """The same target with every device's time taken from the fitted device model ``name`` (its speed factor
        and latency table dropped; memory, width speed-ups and links kept)."""
        data = self.model_dump()
        for d in ([data["devices"]] if isinstance(self.devices, EqualDevices) else data["devices"]):
            d.update(latency_model=name, speed_factor=1.0, latency_table=None)
        return target_from_dict(data, f"target {self.name} with --latency-device")

    def with_count(self, k: int) -> "HardwareTarget":
        """The same target with ``k`` devices: equal devices change their count; a list is cut or extended by
        repeating its last device."""
        data = self.model_dump()
        if isinstance(self.devices, EqualDevices):
            data["devices"]["count"] = int(k)
        else:
            lst = data["devices"]
            data["devices"] = (lst + [lst[-1]] * k)[:k]
        if isinstance(self.links, list) and len(self.links) > 1:
            lst = data["links"]
            data["links"] = (lst + [lst[-1]] * k)[: max(k - 1, 1)]
        return HardwareTarget.model_validate(data)


def _first_error(exc: ValidationError) -> str:
    # a union (equal devices | a list) reports one error per branch: the deepest names the real field
    err = max(exc.errors(), key=lambda e: len(e["loc"]))
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("EqualDevices", "list[", "Link", "function")))
    msg = err["msg"].removeprefix("Value error, ")
    head, _, rest = msg.partition(": ")
    if rest and head.isidentifier():  # a whole-model check names its field first ("links: ...")
        loc, msg = f"{loc}.{head}" if loc else head, rest
    return f"field '{loc or '(top level)'}': {msg}"


def target_from_dict(data: Any, where: str = "target") -> HardwareTarget:
    if not isinstance(data, Mapping):
        raise TargetError(f"{where}: expected a mapping of fields at the top level")
    try:
        return HardwareTarget.model_validate(dict(data))
    except ValidationError as exc:
        raise TargetError(f"{where}: {_first_error(exc)}") from None


def load_target(path: str | Path) -> HardwareTarget:
    """Read and validate a target file (YAML or JSON). A bare name (``edge_npu_4x``) means a shipped target."""
    p = Path(path)
    if not p.exists() and not p.suffix and (TARGETS_DIR / f"{p.name}.yaml").exists():
        p = TARGETS_DIR / f"{p.name}.yaml"
    if not p.is_file():
        raise TargetError(f"target file not found: {p}")
    import yaml

    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TargetError(f"target file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    target = target_from_dict(data, f"target file {p}")
    for i, d in enumerate(target.device_list):
        if d.latency_table is not None:
            tp = Path(d.latency_table)
            if not tp.is_absolute():
                tp = p.parent / tp
            if not tp.is_file():
                raise TargetError(f"target file {p}: field 'devices.{i}.latency_table': file not found: {tp}")
    return target


def shipped_targets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(TARGETS_DIR.glob("*.yaml"))}


def read_latency_table(path: str | Path) -> dict[str, float]:
    """A per-op latency table: JSON ``{key: ms}`` or CSV with columns ``key,latency_ms``. Keys are matched against
    a node's id, then its module name, then its op type."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".json":
            raw = json.loads(p.read_text())
            return {str(k): float(v) for k, v in raw.items()}
        with p.open() as fh:
            return {str(r["key"]): float(r["latency_ms"]) for r in csv.DictReader(fh)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TargetError(f"latency table {p} is malformed: {exc}") from None
