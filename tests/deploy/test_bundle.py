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
    assert torch.equal(out, y)  # bit for bit (tasks/deploy/pipeline_run.py: no float tolerance)
    assert [s["output_shape"] for s in doc["stages"]][-1] == [16, 10]


def test_pipeline_run_as_processes_matches_unsplit(bundle):
    from forgeflow.tasks.deploy.pipeline_run import run_pipeline

    path, _, _ = bundle
    r = run_pipeline(path, microbatches=6, warmup=1)
    assert r["equal"] is True and r["max_abs_diff"] == 0.0  # bit for bit: one layout, one kernel per op
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


def test_stem_computes_in_nchw_whatever_the_input_layout(small_family):
    """The digits tensors have strides (64, 1, 8, 1) (C = 1 is ambiguous: channels_last too). Before the fix the
    bilinear resize kept that layout and every later conv ran in channels_last, while a bundle stage (input from a
    file or a pipe: plain NCHW) ran NCHW; the kernels round differently and the activation fake-quantizers turned
    one-ulp differences into whole quantization steps (up to 0.1 logits at the output)."""
    from forgeflow.tasks.deploy.chain import extract_chain

    fam, _ = small_family
    sp = fam.net.config.space
    arch = sp.largest()
    assert arch.resolution != fam.data.side  # the resize runs
    chain, _ = extract_chain(fam.net, arch)
    chain.eval()
    x = fam.data.x_test[:8]
    plain = torch.empty(x.shape).copy_(x)
    assert plain.stride() != x.stride()
    with torch.inference_mode():
        y = chain[0](x)
        assert y.stride() == torch.empty(y.shape).stride()  # plain NCHW
        assert torch.equal(y, chain[0](plain))


@pytest.mark.slow
def test_bundle_stages_reproduce_the_quantized_model_bit_for_bit(small_family, host2, tmp_path):
    """Old behaviour: the export-time output (model on a slice of the test set) and the composed stages (the same
    input read back from check.safetensors) differed by whole quantization steps. Now they are identical."""
    from forgeflow.tasks.deploy.bundle import load_check, load_stage, read_bundle
    from forgeflow.tasks.deploy.pipeline import export_bundle, plan_chosen

    fam, _ = small_family
    arch = fam.net.config.space.largest().to_string()
    planned = plan_chosen(fam, arch, host2)
    export_bundle(fam, arch, planned, host2, tmp_path / "b", "test-run")
    doc = read_bundle(tmp_path / "b")
    x, y = load_check(tmp_path / "b", doc)
    out = x
    with torch.inference_mode():
        for i in range(len(doc["stages"])):
            out = load_stage(tmp_path / "b", i, doc)(out)
    assert float((out - y).abs().max()) == 0.0
