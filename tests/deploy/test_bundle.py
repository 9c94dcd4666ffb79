"""Bundles: written with hashes, rebuilt stage by stage, run as k processes (real spawn), tampering caught."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests._cli import run_cli


def test_plan_covers_the_chain_in_order_with_a_certificate(bundle):
    _, planned, info = bundle
    plan = planned["plan"]
    assert plan["planner"] == "joint" and plan["k"] == 2 == info["stages"]
    assert plan["lower_bound_ms"] <= plan["bottleneck_ms"] + 1e-9
    assert plan["ratio"] is not None and plan["ratio"] >= 1 - 1e-9
    assert len(info["boundaries"]) == 1 and info["boundaries"][0][0] == 16


def test_stages_compose_to_the_stored_quantized_output(bundle):
    from forgeflow.tasks.deploy.bundle import load_check, load_stage, read_bundle

    path, _, _ = bundle
    doc = read_bundle(path)
    x, y = load_check(path, doc)
    out = x
    with torch.inference_mode():
        for i in range(len(doc["stages"])):
            out = load_stage(path, i, doc)(out)
    assert torch.equal(out.argmax(1), y.argmax(1)) and float((out - y).abs().max()) <= 1e-5 * float(y.abs().max())
    assert [s["output_shape"] for s in doc["stages"]][-1] == [16, 10]


def test_pipeline_run_as_processes_matches_unsplit(bundle):
    from forgeflow.tasks.deploy.pipeline_run import run_pipeline

    path, _, _ = bundle
    r = run_pipeline(path, microbatches=6, warmup=1)
    assert r["equal"] is True and r["max_abs_diff"] <= 1e-5
    assert r["k"] == 2 and len(r["stage_ms_measured"]) == 2 and r["throughput_mb_s"] > 0


@pytest.mark.parametrize("victim", ["stage_1.safetensors", "PLAN.json", "check.safetensors"])
def test_tampered_bundle_is_one_line_exit_2(bundle, tmp_path, victim):
    path, _, _ = bundle
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    f = bad / victim
    if victim == "PLAN.json":
        doc = json.loads(f.read_text())
        doc["stages"][0]["output_shape"][0] += 1
        f.write_text(json.dumps(doc))
    else:
        data = bytearray(f.read_bytes())
        data[-3] ^= 0x01
        f.write_bytes(bytes(data))
    p = run_cli("pipeline", "run", str(bad), "--microbatches", "4")
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and victim in lines[0] and "tampered" in lines[0]
    assert p.stdout == ""
