"""One configuration convention for every flow: a frozen dataclass per flow, validated, and one serializer.

Model: torchao's ``config_to_dict`` / ``config_from_dict``: the dataclass's own field types drive the conversion, so
a configuration survives JSON (CLI -> flow parameters -> Prefect deployments -> the catalog's ``runs.parameters``)
and comes back as the same frozen object::

    @dataclass(frozen=True)
    class MyRequest(Config):
        epochs: int = 10
        bits: tuple[int, ...] = (4, 8)

        def validate(self) -> "MyRequest":          # raise a ForgeflowError naming the bad option; return self
            ...

    params = MyRequest(epochs=3).to_dict()          # {"epochs": 3, "bits": [4, 8]}: JSON-able
    MyRequest.from_dict(params)                     # MyRequest(epochs=3, bits=(4, 8)), validated

``config_from_dict`` rejects unknown keys and values of the wrong type with one line naming the parameter, turns
lists into tuples and nested mappings into nested configs (a string into a nested config through its ``parse``
when it has one, e.g. ``compression: int8``), and calls ``validate()``. No Prefect, no torch.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union

from forgeflow.tasks.errors import ForgeflowError

C = TypeVar("C")


class ConfigError(ForgeflowError):
    """Parameters that do not make a valid configuration (unknown key, wrong type)."""


class Config:
    """Mixin of every flow configuration (a frozen dataclass): ``to_dict``, ``from_dict`` and ``validate``."""

    def validate(self):
        """Raise a ForgeflowError naming the first bad option; return self. Override per configuration."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | C) -> C:
        return config_from_dict(cls, data)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a dataclass configuration (nested configs as dicts, tuples as lists, enums as values)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {type(config).__name__}")
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(cls: type[C], data: Mapping[str, Any] | C, *, validate: bool = True) -> C:
    """The ``cls`` configuration described by ``data`` (see the module docstring); ``data`` may already be one."""
    config = data if isinstance(data, cls) else _build(cls, data, cls.__name__)
    if validate and hasattr(config, "validate"):
        config = config.validate() or config
    return config


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _build(cls: type, data: Any, where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of parameters, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {', '.join(map(str, unknown))} "
                          f"(known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _coerce(hints.get(name, Any), value, f"{where}.{name}") for name, value in data.items()})


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else ConfigError(f"{where}: {value!r} is not a {_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and callable(getattr(tp, "parse", None)):
            return tp.parse(value)
        return _build(tp, value, where)
    if origin is tuple:
        if isinstance(value, Mapping) and len(args) == 2 and typing.get_origin(args[0]) is tuple:
            value = list(value.items())  # {name: value} for a tuple of (name, value) pairs
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))) if args \
            else tuple(value)
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(str(m.value) for m in tp)}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not (math.isfinite(value) and value == int(value))):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _name(tp: Any) -> str:
    return " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(tp) if a is not type(None))
