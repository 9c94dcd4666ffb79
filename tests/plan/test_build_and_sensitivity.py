"""Building instances from a profiled graph + target, and sensitivities without data (ZeroQ)."""

from __future__ import annotations

import numpy as np
import pytest

from forgeflow.tasks.plan import build_instance, load_target, solve_plan
from forgeflow.tasks.profiling.graph import CostGraph, Edge, Node


def graph():
    nodes = [Node(id=f"n{i}", op="conv2d", module=f"conv{i}", flops=10, param_bytes=4000, output_bytes=1000,
                  latency_ms=1.0 + i, size_bytes=5000.0) for i in range(4)]
    edges = [Edge(f"n{i}", f"n{i + 1}", 1_000_000, 0.1) for i in range(3)]
    return CostGraph("g", tuple(nodes), tuple(edges))


def test_build_instance_applies_device_speed_bits_memory_links_and_budget():
    tgt = load_target("edge_npu_4x")
    sens = {f"conv{i}": {8: 0.1 * (i + 1), 4: 1.0 * (i + 1)} for i in range(4)}
    inst = build_instance(graph(), sens, tgt, sensitivity_source="given")
    assert inst.k == 4 and inst.mem_caps == (256 * 2 ** 20,) * 4
    j8 = inst.option_of_bits(2, 8)
    # float: host ms x speed factor 2; 8 bits: int8 kernels twice as fast
    assert inst.time[0, 2, 0] == pytest.approx(3.0 * 2.0) and inst.time[0, 2, j8] == pytest.approx(3.0)
    # 8-bit weights: 4000 float32 weight bytes -> 1000, the other 1000 bytes unchanged
    assert inst.size[2, j8] == pytest.approx(2000.0)
    # transfer = link latency + bytes / bandwidth
    assert inst.base.c[0] == pytest.approx(0.02 + 1e3 * 1_000_000 / 985.0e6)
    assert inst.budget == pytest.approx(0.5 * sum(1.0 * (i + 1) for i in range(4)))
    assert inst.meta["sensitivity_source"] == "given"
    res = solve_plan(inst, 10)
    assert res.plan.sensitivity <= inst.budget + 1e-12


def test_heterogeneous_target_and_latency_hook():
    tgt = load_target("hetero_1big_3small")
    calls = []

    def source(stage, device, node):
        calls.append((stage, node.id))
        return 10.0 if device.name == "big" else None  # a fitted device model answers for the big device only

    inst = build_instance(graph(), {}, tgt, latency_source=source, budget=0.0)
    assert not inst.homogeneous and inst.mem_caps[0] > inst.mem_caps[1]
    assert inst.time[0, 1, 0] == 10.0 and inst.time[1, 1, 0] == pytest.approx(2.0 * 1.5)
    assert len(calls) == 4 * 4
    res = solve_plan(inst, 10)
    assert res.ratio == pytest.approx(1.0, abs=1e-4)


def test_zeroq_inputs_fit_batchnorm_statistics_and_name_their_source():
    import torch
    import torch.nn as nn

    from forgeflow.tasks.plan.sensitivity import SOURCE_GAUSSIAN, SOURCE_ZEROQ, distilled_inputs, sensitivities_for

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    bn = model[1]
    bn.running_mean.copy_(torch.tensor([0.5, -0.3, 1.0, 0.0]))
    bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.0, 3.0]))

    def mismatch(x):
        with torch.no_grad():
            h = model[0](x)
            return float((h.mean(dim=(0, 2, 3)) - bn.running_mean).norm()
                         + (h.var(dim=(0, 2, 3), unbiased=False).sqrt() - bn.running_var.sqrt()).norm())

    x0 = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x, source = distilled_inputs(model, (1, 1, 8, 8), batch_size=16, steps=60, seed=0)
    assert source == SOURCE_ZEROQ and mismatch(x) < 0.5 * mismatch(x0)
    sens, source = sensitivities_for(model, (1, 1, 8, 8), bits=(8, 4), samples=8, distill_steps=10, batch_size=8)
    assert source == SOURCE_ZEROQ and set(sens) == {"0", "4"}
    assert all(s[4] >= s[8] >= 0 for s in sens.values())
    _, source = distilled_inputs(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), (1, 1, 8, 8), steps=2)
    assert source == SOURCE_GAUSSIAN
