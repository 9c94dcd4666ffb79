"""Export a bit plan: as JSON, and as torchao per-module configurations.

torchao 0.18.0 (a declared dependency, checked to import and quantize beside torch 2.14.1) takes an ``FqnToConfig``
mapping module FQNs to configs. Every quantized Linear layer maps to ``IntxWeightOnlyConfig(weight_dtype=
torch.int{b}, granularity=PerAxis(0), mapping_type=MappingType.SYMMETRIC)`` (per-output-channel symmetric weights,
as planned); layers kept in float are left out. Convolutions are not exported to torchao: in 0.18.0
``PerAxis(0)`` on a 4-D conv weight yields one scale per (out channel, kernel position) rather than per output
channel, and fails outright for a single input channel, so a conv config would not be the planned quantizer;
``torchao_unsupported`` lists those layers with the reason (they stay fake-quantized by ``apply.quantize_model``). ``torchao_config_data`` gives the same configs as plain data (the
class name and its keyword arguments per FQN) for the JSON export and the catalog; ``torchao_config`` builds the
real objects, and ``apply_torchao`` runs ``torchao.quantization.quantize_`` with them.
Note: torchao's symmetric scale is ``max|W| / ((qmax - qmin) / 2)``, and it does not apply our MSE clipping, so
its weights differ slightly from the fake-quantized ones the plan's accuracy was measured with.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import torch.nn as nn

from forgeflow.tasks.quantize.errors import QuantizeError
from forgeflow.tasks.quantize.layers import quantizable_modules
from forgeflow.tasks.quantize.problem import FLOAT_BITS

TORCHAO_SUPPORTED = (nn.Linear,)
TORCHAO_BITS = set(range(1, 9))  # torch.int1 .. torch.int8


def plan_json(plan: Mapping[str, int], *, model: str = "", act_bits: int | None = None,
              allocation: Mapping[str, Any] | None = None) -> str:
    """The plan as JSON: {"model", "act_bits", "layers": {fqn: bits}, "allocation": {...}} (32 = float)."""
    return json.dumps({"model": model, "act_bits": act_bits, "layers": {k: int(v) for k, v in plan.items()},
                       "allocation": dict(allocation or {})}, indent=2, sort_keys=False, default=str)


def torchao_config_data(model: nn.Module, plan: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """FQN -> {"config": class name, "kwargs": {...}} for each planned layer torchao supports at that width."""
    modules = quantizable_modules(model)
    out: dict[str, dict[str, Any]] = {}
    for name, bits in plan.items():
        if name not in modules:
            raise QuantizeError(f"plan names {name!r}, which is not a quantizable layer of the model")
        if bits >= FLOAT_BITS or not isinstance(modules[name], TORCHAO_SUPPORTED) or bits not in TORCHAO_BITS:
            continue
        out[name] = {"config": "IntxWeightOnlyConfig",
                     "kwargs": {"weight_dtype": f"torch.int{int(bits)}", "granularity": "PerAxis(axis=0)",
                                "mapping_type": "MappingType.SYMMETRIC"}}
    return out


def torchao_unsupported(model: nn.Module, plan: Mapping[str, int]) -> dict[str, str]:
    """FQN -> reason, for planned quantized layers with no torchao config."""
    modules = quantizable_modules(model)
    out = {}
    for name, bits in plan.items():
        if bits >= FLOAT_BITS or name not in modules:
            continue
        if not isinstance(modules[name], TORCHAO_SUPPORTED):
            out[name] = (f"{type(modules[name]).__name__}: torchao 0.18 IntxWeightOnlyConfig has no "
                         "per-output-channel conv weight quantizer")
        elif bits not in TORCHAO_BITS:
            out[name] = f"{bits} bits: torchao integer dtypes are int1..int8"
    return out


def torchao_config(model: nn.Module, plan: Mapping[str, int]):
    """A torchao ``FqnToConfig`` for ``quantize_(model, cfg, filter_fn=None)``."""
    import torch
    from torchao.quantization import FqnToConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis
    from torchao.quantization.quant_primitives import MappingType

    cfgs = {}
    for name, entry in torchao_config_data(model, plan).items():
        dtype = getattr(torch, entry["kwargs"]["weight_dtype"].split(".", 1)[1])
        cfgs[name] = IntxWeightOnlyConfig(weight_dtype=dtype, granularity=PerAxis(0),
                                          mapping_type=MappingType.SYMMETRIC)
    return FqnToConfig(cfgs)


def apply_torchao(model: nn.Module, plan: Mapping[str, int]) -> nn.Module:
    """Quantize ``model`` in place with torchao by the plan (real int weights, torchao's kernels); returns it."""
    from torchao.quantization import quantize_

    if not torchao_config_data(model, plan):
        return model
    quantize_(model, torchao_config(model, plan), filter_fn=None)
    return model
