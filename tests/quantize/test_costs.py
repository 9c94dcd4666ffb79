"""Building the allocation problem of a model: sizes, BOPs, latency tables, bit lists."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forgeflow.tasks.quantize.costs import load_latency_table, model_problem, parse_bits
from forgeflow.tasks.quantize.errors import QuantizeError, UnknownLayerError
from forgeflow.tasks.quantize.ilp import solve_allocation
from forgeflow.tasks.quantize.layers import LayerInfo
from forgeflow.tasks.quantize.sensitivity import LayerSensitivity

LAYERS = [LayerInfo("conv", "Conv2d", 100, 4, 4, 1000), LayerInfo("fc", "Linear", 40, 2, 2, 40)]
SENS = [LayerSensitivity("conv", 2.0, 0.02, 0.1, 8, {4: 1.0, 8: 0.01, 32: 0.0}),
        LayerSensitivity("fc", 1.0, 0.025, 0.1, 8, {4: 2.0, 8: 0.02, 32: 0.0})]


def test_sizes_bops_and_costs():
    p = model_problem(LAYERS, SENS, (4, 8, 32), act_bits=8, base_bytes=10.0)
    assert p.bits == (4, 8, 32)
    # conv at 4 bits: 100 * 4 / 8 packed + 4 bytes x (4 scales + 4 biases)
    assert p.size_bytes[0].tolist() == [50 + 32, 100 + 32, 4 * 104]
    assert p.bops[0].tolist() == [1000 * 4 * 8, 1000 * 8 * 8, 1000 * 32 * 32]  # float layers keep float inputs
    assert p.cost[1].tolist() == pytest.approx([0.05, 0.0005, 0.0])
    assert p.plan_totals({"conv": 32, "fc": 32})["size_bytes"] == 4 * 104 + 4 * 42 + 10.0


def test_latency_table_restricts_widths(tmp_path):
    path = tmp_path / "lat.json"
    path.write_text(json.dumps({"conv": {"4": 0.2, "8": 0.3}, "fc": {"4": 0.05, "8": 0.06, "32": 0.1}}))
    table = load_latency_table(path)
    p = model_problem(LAYERS, SENS, (4, 8, 32), latency_ms=table, budgets={"latency_ms": 0.36})
    assert not p.allowed_mask()[0, 2]  # no float latency measured for conv
    a = solve_allocation(p)
    assert a.totals["latency_ms"] <= 0.36 and dict(a.bits) == {"conv": 8, "fc": 8}
    csv = tmp_path / "lat.csv"
    csv.write_text("layer,bits,latency_ms\nconv,4,0.2\nconv,8,0.3\nfc,4,0.05\nfc,8,0.06\n")
    assert load_latency_table(csv)["fc"] == {4: 0.05, 8: 0.06}
    with pytest.raises(UnknownLayerError, match="'head'"):
        model_problem(LAYERS, SENS, (4, 8), latency_ms={**table, "head": {4: 1.0}})
    with pytest.raises(QuantizeError, match="no entry for layer"):
        model_problem(LAYERS, SENS, (4, 8), latency_ms={"conv": {4: 1.0}})
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(QuantizeError, match="must be JSON"):
        load_latency_table(bad)


def test_parse_bits():
    assert parse_bits("8,2,4,3") == (2, 3, 4, 8, 32)
    assert parse_bits("4,8", keep_float=False) == (4, 8)
    for bad in ("", "2,x", "1,4", "4,64"):
        with pytest.raises(QuantizeError):
            parse_bits(bad)
    assert np.array_equal(model_problem(LAYERS, SENS, (4, 8)).allowed_mask(), np.ones((2, 2), dtype=bool))
