"""`forgeflow verify`: bad input is one line, exit 2, nothing written; a small end-to-end run with --export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forgeflow.catalog import open_catalog
from tests._cli import run_cli as forgeflow_cli

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`forgeflow verify ARGS` in this process (tests/_cli.py)."""
    return forgeflow_cli("verify", *args, env={"FORGEFLOW_DASK_WORKERS": "1"})


BAD = [
    (["--model", "tests.verify.nets:sigmoid_mlp", "--eps", "1"], "unsupported layer '2' (Sigmoid)"),
    (["--model", "forgeflow:digits_mlp", "--eps", "0"], "--eps values must be positive integers"),
    (["--model", "forgeflow:digits_mlp", "--eps", "1", "--bits", "conv1=8,conv2=8,fc=8"],
     "the plan is for a different model: layer(s) conv1, conv2, fc are not in forgeflow:digits_mlp"),
    (["--model", "forgeflow:digits_mlp", "--eps", "-2"], "--eps values must be positive integers"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path):
    cat = tmp_path / "cat"
    p = run_cli(*args, "--catalog", str(cat), "--json", tmp_path=tmp_path, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert message in p.stderr and p.stdout == ""
    assert len([ln for ln in p.stderr.strip().splitlines() if ln.strip()]) == 1
    assert open_catalog(str(cat)).runs().num_rows == 0


@pytest.mark.slow
def test_verify_end_to_end_with_export(tmp_path):
    cat = tmp_path / "cat"
    out = tmp_path / "export"
    p = run_cli("--model", "forgeflow:digits_mlp", "--eps", "1,64", "--samples", "3", "--epochs", "2",
                "--time-limit", "20", "--export", str(out), "--catalog", str(cat), "--json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert last["verified"] + last["falsified"] + last["unknown"] == 6 and last["seconds"] > 0
    assert set(last["networks"]) == {"quantized", "float"}
    c = open_catalog(str(cat))
    rows = c.read("verify_results").to_pylist()
    assert len(rows) == 12 and {r["eps"] for r in rows} == {1, 64}
    for r in rows:
        if r["answer"] == "falsified":
            assert r["counterexample"] and r["confirmed_by"] == "executor"
        if r["answer"] == "verified":
            assert r["confirmed_by"]
    net = json.loads((out / "network.json").read_text())
    assert net["format"] == "forgeflow-qnet/1" and net["layers"][0]["weight_bits"] == 8
    check = subprocess.run([sys.executable, str(out / "recheck.py"), str(out)], capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0 and "0 problem(s) in 12 instances" in check.stdout, check.stdout
