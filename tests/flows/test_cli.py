"""The `forgeflow` CLI end to end: `optimize` as a user runs it (a subprocess, Dask LocalCluster), then the catalog
commands on its result, a second identical run and every bad input in this process (tests/_cli.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests._cli import run_cli as run_cli_here
from tests.conftest import free_port


def run_here(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`forgeflow ARGS` in this process (tests/_cli.py): what the command answers, without a fresh interpreter."""
    return run_cli_here(*args, env={"FORGEFLOW_DASK_WORKERS": "1", **(env or {})})


def test_optimize_json_then_catalog_commands(tmp_path, optimized_cnn):
    cat, p = optimized_cnn  # `forgeflow optimize` in a fresh interpreter (tests/flows/conftest.py)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    result = json.loads(lines[-1])  # the last stdout line is one JSON object
    assert all(json.loads(line) for line in lines)  # and stdout holds nothing but JSON
    assert result["model_summary"]["params"] == 6186
    run_id = result["run_id"]

    # a second identical optimize reuses every finished step (found through the catalog's step_cache table)
    again = run_here("optimize", "--model", "forgeflow:digits_cnn", "--stages", "2", "--catalog", cat, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(again.stdout.strip().splitlines()[-1])
    assert second["run_id"] != run_id
    from forgeflow.catalog import open_catalog
    from forgeflow.tasks.step_cache import reuses

    ran = [(r["step"], r["status"]) for r in reuses(open_catalog(cat), run_id)]
    reused = [(r["step"], r["status"], r["source_run_id"]) for r in reuses(open_catalog(cat), second["run_id"])]
    assert len(ran) >= 7 and {s for _, s in ran} == {"completed"}
    assert sorted(reused) == sorted((step, "reused", run_id) for step, _ in ran)
    for step in ("model_summary", "quantize", "partition", "federated", "search"):
        assert second[step] == json.loads(json.dumps(result[step])), step

    ls = run_here("catalog", "ls", "--catalog", cat, "--json")
    assert ls.returncode == 0, ls.stderr
    tables = {t["table"]: t for t in json.loads(ls.stdout)["tables"]}
    assert tables["model_summaries"]["rows"] == result["model_summary"]["modules"]

    q = run_here("catalog", "query", "SELECT sum(params) AS p FROM model_summaries", "--catalog", cat, "--json")
    assert json.loads(q.stdout)["rows"] == [{"p": 6186}]

    show = run_here("catalog", "show", run_id, "--catalog", cat, "--json")
    shown = json.loads(show.stdout)
    assert shown["run"]["status"] == "completed" and "model_summaries" in shown["written"]

    comp = run_here("catalog", "compact", "--catalog", cat, "--json")
    assert comp.returncode == 0 and "removed_files" in json.loads(comp.stdout)

    # the plots the run lists can be copied out of the catalog
    plots = [v for step in result.values() if isinstance(step, dict) for v in step.values()
             if isinstance(v, str) and v.startswith("objects/") and v.endswith(".png")]
    assert plots
    out = tmp_path / "plot.png"
    got = run_here("catalog", "get", plots[0], "-o", str(out), "--catalog", cat, "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"key": plots[0], "path": str(out), "bytes": out.stat().st_size}
    from forgeflow.catalog import open_catalog

    assert out.read_bytes() == open_catalog(cat).get_object(plots[0])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD_INPUTS = [
    (["optimize", "--model", "torchvision:not_a_model"], "unknown torchvision model"),
    (["optimize", "--model", "no_colon_here"], "is not of the form"),
    (["optimize", "--model", "nosuchpkg.mod:factory"], "cannot import module"),
    (["optimize", "--model", "forgeflow:digits_cnn", "--stages", "0"], "--stages must be between 1 and 1024"),
    (["optimize", "--model", "forgeflow:digits_cnn", "--input-shape", "1,x,8"], "input shape"),
    (["optimize", "--model", "forgeflow:digits_cnn", "--input-shape", "1,3,8,8"], "cannot run on an input of shape"),
    (["optimize", "--model", "forgeflow:digits_cnn", "--dask-address", "localhost:1"], "tcp://HOST:PORT"),
    (["catalog", "ls", "--catalog", "ftp://host/x"], "unsupported catalog URL scheme"),
    (["catalog", "query", "SELECT * FROM nope"], "nope"),
    (["catalog", "query", "DROP TABLE runs"], "only read-only SELECT"),
    (["catalog", "query", "SELEC 1"], "malformed SQL"),
    (["catalog", "compact", "--table", "nope"], "unknown table 'nope'"),
    (["catalog", "show", "no-such-run"], "no run 'no-such-run'"),
    (["catalog", "get", "objects/ab/ab" + "0" * 62 + ".png"], "not found in catalog"),
    (["catalog", "get", "objects/00/missing.png"], "is not an object key"),
    (["catalog", "get", "runs/part-0.parquet"], "is not an object key"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a[:3]) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, args, message):
    cat = tmp_path / "cat"
    if "--catalog" not in args:
        args = [*args, "--catalog", str(cat)]
    p = run_here(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2
    written = [f for f in cat.rglob("*.parquet")] if cat.exists() else []
    assert written == []


def test_unreachable_s3_catalog_fails_before_running(tmp_path):
    port = free_port()
    p = run_here("optimize", "--model", "forgeflow:digits_cnn", "--catalog", "s3://bucket/x",
                "--s3-endpoint", f"http://127.0.0.1:{port}",
                env={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    assert p.returncode == 2
    assert "cannot reach S3 catalog" in p.stderr and "Traceback" not in p.stderr
