"""`forgeflow latency fit|predict` as a user runs them (in this process through tests/_cli.py, a local catalog folder)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests._cli import run_cli as forgeflow_cli
from tests.latency.test_fewshot import synthetic_table


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`forgeflow latency ARGS` in this process (tests/_cli.py)."""
    return forgeflow_cli("latency", *args)


def test_fit_predict_and_bad_input(tmp_path):
    table, truth = synthetic_table()
    known = {f"latency_ms_{d}": table.latency[d] for d in table.devices if d != "new"}
    pq.write_table(pa.table({"arch": table.archs, **known}), tmp_path / "table.parquet")
    rows = np.random.default_rng(0).choice(len(truth), 20, replace=False)
    pq.write_table(pa.table({"arch": [table.archs[i] for i in rows], "latency_ms": truth[rows]}), tmp_path / "m.parquet")
    pq.write_table(pa.table({"arch": [table.archs[i] for i in rows[:2]], "latency_ms": truth[rows[:2]]}),
                   tmp_path / "few.parquet")
    cat = str(tmp_path / "cat")

    bad = run_cli("fit", "--device", "npu", "--measurements", str(tmp_path / "few.parquet"), "--table",
                  str(tmp_path / "table.parquet"), "--catalog", cat, tmp_path=tmp_path)
    assert bad.returncode == 2 and "too few measurements" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not Path(cat).exists()  # nothing written

    fit = run_cli("fit", "--device", "npu", "--measurements", str(tmp_path / "m.parquet"), "--table",
                  str(tmp_path / "table.parquet"), "--catalog", cat, "--json", tmp_path=tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    out = json.loads(fit.stdout.strip().splitlines()[-1])
    assert out["device"] == "npu" and out["n_measurements"] == 20 and out["space"] == "nb201"

    pred = run_cli("predict", "--device", "npu", "--all", "--out", str(tmp_path / "p.parquet"), "--catalog", cat,
                   "--json", tmp_path=tmp_path)
    assert pred.returncode == 0, pred.stderr[-2000:]
    p = pq.read_table(tmp_path / "p.parquet")
    assert p.num_rows == 15625
    order = {a: i for i, a in enumerate(table.archs)}
    got = np.empty(len(truth))
    got[[order[a] for a in p.column("arch").to_pylist()]] = p.column("predicted_latency_ms").to_numpy()
    assert np.corrcoef(np.argsort(np.argsort(got)), np.argsort(np.argsort(truth)))[0, 1] > 0.95

    unknown = run_cli("predict", "--device", "gpu9", "--all", "--catalog", cat, tmp_path=tmp_path)
    assert unknown.returncode == 2 and "no latency model for device 'gpu9'" in unknown.stderr
    mismatch = run_cli("predict", "--device", "npu", "--arch", "r8|d1,1,1|e2,2,2;2,2,2;2,2,2|k3,3,3;3,3,3;3,3,3",
                       "--catalog", cat, tmp_path=tmp_path)
    assert mismatch.returncode == 2 and "not a nb201 architecture" in mismatch.stderr
