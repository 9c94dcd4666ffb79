"""Profile every unit an elastic family can produce, on this host, once: the latency table the planner reads.

A unit's time depends on its shape and its input side only, so the family's whole space is covered by a small table
(stem per resolution, each block shape at each side it can see, the head per final side): the digits family has
~110 distinct units against 8e8 subnets. Each is timed alone at the microbatch size (CPU thread time, the minimum of
interleaved rounds, ``tasks.supernet.predictors.measure_many_ms``) on random weights: time does not depend on the
trained values.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from forgeflow.tasks.deploy.chain import build_unit, unit_specs
from forgeflow.tasks.supernet.space import ElasticArch
from forgeflow.tasks.supernet.supernet import ElasticSupernet


def unit_key(spec: dict[str, Any], side_in: int) -> str:
    s = {k: v for k, v in spec.items() if k != "name"}
    return json.dumps({**s, "side_in": side_in}, sort_keys=True)


def chain_keys(net: ElasticSupernet, arch: ElasticArch, side: int) -> list[tuple[str, dict[str, Any], int]]:
    """(key, spec, input side) of every unit of ``arch``'s chain for an input of side ``side``."""
    out = []
    cur = side
    for spec in unit_specs(net, arch):
        out.append((unit_key(spec, cur), spec, cur))
        if spec["kind"] == "stem":
            cur = spec["side"]
        elif spec["kind"] == "block":
            cur = (cur - 1) // spec["stride"] + 1
    return out


def family_units(net: ElasticSupernet, side: int) -> dict[str, tuple[dict[str, Any], int]]:
    """Every distinct unit of the family's space: key -> (spec, input side)."""
    sp = net.config.space
    units: dict[str, tuple[dict[str, Any], int]] = {}
    m = sp.max_depth
    for r in sp.resolutions:
        for e in sp.expand_ratios:
            for k in sp.kernel_sizes:
                arch = ElasticArch(r, (m,) * sp.n_stages, ((e,) * m,) * sp.n_stages, ((k,) * m,) * sp.n_stages)
                for key, spec, s in chain_keys(net, arch, side):
                    units.setdefault(key, (spec, s))
    return units


def with_act_fakequant(unit: torch.nn.Module, bits: int = 8) -> torch.nn.Module:
    """The unit as the host runs it quantized: each quantizable layer's input fake-quantized (``tasks.quantize``)."""
    from forgeflow.tasks.quantize.fakequant import fake_quantize_activation
    from forgeflow.tasks.quantize.layers import quantizable_modules

    for m in quantizable_modules(unit).values():
        m.register_forward_pre_hook(lambda mod, inp: (fake_quantize_activation(inp[0], bits, 0.05, 0), *inp[1:]))
    return unit


def profile_units(units: dict[str, tuple[dict[str, Any], int]], microbatch: int, channels: int,
                  rounds: int = 3, repeats: int = 5) -> dict[str, tuple[float, float]]:
    """key -> (ms per microbatch on this host in float, ms with its layers' inputs fake-quantized as a quantized
    stage runs here)."""
    from forgeflow.tasks.supernet.predictors import measure_many_ms

    torch.manual_seed(0)
    jobs, keys = [], []
    for key, (spec, side) in units.items():
        in_ch = channels if spec["kind"] == "stem" else spec.get("in_ch", spec.get("in_features"))
        shape = (microbatch, in_ch, side, side)
        jobs += [(build_unit(spec).eval(), shape), (with_act_fakequant(build_unit(spec).eval()), shape)]
        keys.append(key)
    ms = measure_many_ms(jobs, rounds=rounds, repeats=repeats)
    return {k: (float(ms[2 * i]), float(ms[2 * i + 1])) for i, k in enumerate(keys)}
