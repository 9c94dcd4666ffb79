"""Bad input to `forgeflow optimize`: one line on stderr naming the problem, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(capsys, args):
    from forgeflow.flows.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    return exc.value.code, [ln for ln in err.strip().splitlines() if ln.strip()]


@pytest.mark.parametrize("case, args, needle", [
    ("unknown family", ["--supernet", "nosuchfamily"], "unknown family 'nosuchfamily'"),
    ("unknown target", ["--target", "nosuchtarget"], "target file not found"),
    ("latency limit", ["--latency-limit-ms", "0.00001"], "infeasible latency limit"),
    ("both specs", ["--supernet", "digits", "--model", "forgeflow:digits_cnn"], "not both"),
    ("tiny budget", ["--budget", "2"], "--budget"),
    ("no clients", ["--clients", "0"], "--clients"),
])
def test_optimize_bad_input(capsys, tmp_path, case, args, needle):
    cat = tmp_path / "cat"
    code, lines = _run(capsys, ["optimize", "--catalog", str(cat), *args])
    assert code == 2 and len(lines) == 1 and needle in lines[0], (case, lines)
    assert not any(p.is_file() for p in cat.rglob("*")) if cat.exists() else True


def test_target_no_subnet_fits_memory(capsys, tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text((ROOT / "deploy/targets/edge-npu-2x-48k.yaml").read_text().replace("memory_bytes: 49152",
                                                                                       "memory_bytes: 1024"))
    cat = tmp_path / "cat"
    code, lines = _run(capsys, ["optimize", "--catalog", str(cat), "--target", str(tiny)])
    assert code == 2 and len(lines) == 1 and "no subnet of family 'digits' fits target" in lines[0], lines
    assert not any(p.is_file() for p in cat.rglob("*")) if cat.exists() else True
