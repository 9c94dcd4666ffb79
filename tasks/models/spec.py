"""Resolve a model spec string to an ``nn.Module``.

Specs:
- ``torchvision:NAME`` -- a torchvision architecture built with ``weights=None`` (nothing is downloaded);
- ``package.module:factory`` -- any importable callable returning an ``nn.Module`` (keyword arguments passed on);
- ``forgeflow:digits_cnn`` / ``forgeflow:digits_mlp`` / ``forgeflow:digits_mlp_32_32`` / ``forgeflow:digits_mlp_64_64``
  -- the small built-in models for scikit-learn's digits.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from forgeflow.tasks.errors import UnknownModelError

_BUILTINS = {"digits_cnn": "forgeflow.tasks.models.digits:DigitsCNN", "digits_mlp": "forgeflow.tasks.models.digits:DigitsMLP",
             "digits_mlp_32_32": "forgeflow.tasks.models.digits:digits_mlp_32_32",
             "digits_mlp_64_64": "forgeflow.tasks.models.digits:digits_mlp_64_64"}
_SPEC_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: ``source`` is 'torchvision', 'forgeflow' or a module path; ``name`` the factory."""

    source: str
    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, **kwargs: Any) -> "ModelSpec":
        if not isinstance(spec, str) or not _SPEC_RE.match(spec.strip()):
            raise UnknownModelError(
                f"model spec {spec!r} is not of the form 'torchvision:NAME', 'forgeflow:NAME' or 'package.module:factory'"
            )
        source, name = spec.strip().split(":", 1)
        return cls(source, name, dict(kwargs))

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


def _torchvision_factory(name: str):
    import torchvision.models as tvm

    available = set(tvm.list_models())
    if name not in available:
        close = sorted(a for a in available if a.startswith(name[:4]))[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise UnknownModelError(f"unknown torchvision model {name!r}{hint}")
    return lambda **kw: tvm.get_model(name, weights=None, **kw)


def _import_factory(module: str, name: str):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise UnknownModelError(f"cannot import module {module!r} for model spec: {exc}") from None
    fn = getattr(mod, name, None)
    if fn is None or not callable(fn):
        raise UnknownModelError(f"module {module!r} has no callable {name!r}")
    return fn


def resolve_model(spec: str | ModelSpec, **kwargs: Any):
    """Build the model named by ``spec``; raise UnknownModelError with the reason if it cannot be built."""
    import torch.nn as nn

    ms = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec, **kwargs)
    kw = {**ms.kwargs, **kwargs}
    if ms.source == "torchvision":
        factory = _torchvision_factory(ms.name)
    elif ms.source == "forgeflow":
        if ms.name not in _BUILTINS:
            raise UnknownModelError(f"unknown built-in model {ms.name!r}; known: {', '.join(sorted(_BUILTINS))}")
        factory = _import_factory(*_BUILTINS[ms.name].split(":"))
    else:
        factory = _import_factory(ms.source, ms.name)
    try:
        model = factory(**kw)
    except UnknownModelError:
        raise
    except Exception as exc:  # the user's factory failed: name it and its error, not a traceback
        raise UnknownModelError(f"model factory {ms} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UnknownModelError(f"model factory {ms} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def default_input_shape(spec: str | ModelSpec) -> tuple[int, ...]:
    """The input shape (batch 1) a spec expects by default: digits models take 1x1x8x8, vision models 1x3x224x224."""
    ms = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    if ms.source == "forgeflow":
        return (1, 1, 8, 8)
    return (1, 3, 224, 224)


MODEL_ALLOW_ENV = "FORGEFLOW_MODEL_ALLOW"


def check_model_allowed(spec: str, allow: str = "") -> None:
    """Refuse ``spec`` unless it is a built-in family (``torchvision:``, ``forgeflow:``) or its module lies under one
    of the comma-separated module prefixes in ``allow`` (the user's ``FORGEFLOW_MODEL_ALLOW``, read by flows'
    Settings and passed down).

    Applied to served and deployed runs only (their parameters come from whoever can reach the Prefect API, and a
    ``package.module:factory`` spec runs that factory on the workers -- ``os:abort`` would kill them); the CLI,
    run by the user on their own machine, keeps full freedom."""
    parsed = ModelSpec.parse(spec)
    if parsed.source in ("torchvision", "forgeflow"):
        return
    prefixes = [p.strip().rstrip(".") for p in allow.split(",") if p.strip()]
    if any(parsed.source == p or parsed.source.startswith(p + ".") for p in prefixes):
        return
    raise UnknownModelError(
        f"model spec {spec!r} is not allowed in a served or deployed run: only torchvision:, forgeflow: and modules "
        f"under {MODEL_ALLOW_ENV} prefixes ({', '.join(prefixes) or 'none set'}) may be built there")
