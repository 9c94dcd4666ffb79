"""Malformed input across the whole CLI (graphs, model specs, budgets, URLs, SQL, deployments): each case gets one
clear line on stderr naming the problem, exit code 2, no traceback, and nothing written (no catalog file, no
output file, no file a SQL statement tried to create).

The CLI runs in this process (`flows.cli.main`) so the 30+ cases cost one import of torch and Prefect; a few run
in a fresh interpreter as well, exactly as a user types them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port
from tests.ops._procs import forgeflow

MSR_CYCLE = {"nodes": [{"id": 1, "fpgaLatency": 1}, {"id": 2, "fpgaLatency": 1}],
             "edges": [{"sourceId": 1, "destId": 2, "cost": 0}, {"sourceId": 2, "destId": 1, "cost": 0}]}
MSR_DANGLING = {"nodes": [{"id": 1, "fpgaLatency": 1}], "edges": [{"sourceId": 1, "destId": 9, "cost": 0}]}
MSR_NEGATIVE = {"nodes": [{"id": 1, "fpgaLatency": -1}], "edges": []}

D = "forgeflow:digits_cnn"

# (case id, argv with {tmp} for the test's folder, what the message must name)
CASES = [
    # graphs
    ("graph-not-json", ["graph", "import", "{tmp}/notjson.json"], "notjson.json"),
    ("graph-cycle", ["graph", "import", "{tmp}/cycle.json"], "cycle"),
    ("graph-dangling-edge", ["graph", "import", "{tmp}/dangling.json"], "9"),
    ("graph-negative-latency", ["graph", "import", "{tmp}/negative.json"], "-1"),
    ("graph-missing-file", ["graph", "import", "{tmp}/absent.json"], "absent.json"),
    ("partition-bad-graph", ["partition", "--graph", "{tmp}/cycle.json", "--stages", "2"], "cycle"),
    ("partition-zero-stages", ["partition", "--graph", "{tmp}/ok.json", "--stages", "0"], "stages"),
    ("partition-negative-memory-cap", ["partition", "--graph", "{tmp}/ok.json", "--stages", "2", "--memory-cap",
                                       "-5"], "memory"),
    ("graph-export-unknown-id", ["graph", "export", "0123456789abcdef", "{tmp}/out.json"], "0123456789abcdef"),
    # model specs
    ("model-unknown-torchvision", ["optimize", "--model", "torchvision:not_a_model"], "not_a_model"),
    ("model-no-colon", ["profile", "--model", "no_colon_here"], "no_colon_here"),
    ("model-unimportable", ["quantize", "--model", "nosuchpkg.mod:factory", "--size-budget", "4096"], "nosuchpkg"),
    ("model-wrong-input", ["optimize", "--model", D, "--input-shape", "1,3,8,8"], "cannot run on an input"),
    ("model-same-twice", ["profile", "--model", D, "--model", D], "twice"),
    # budgets and numeric options
    ("quantize-negative-size-budget", ["quantize", "--model", D, "--size-budget", "-1"], "budget"),
    ("quantize-latency-budget-no-table", ["quantize", "--model", D, "--latency-budget", "5"], "latency"),
    ("quantize-bad-bits", ["quantize", "--model", D, "--bits", "2,x"], "x"),
    ("quantize-bad-pin", ["quantize", "--model", D, "--size-budget", "4096", "--pin", "conv1"], "--pin"),
    ("optimize-zero-stages", ["optimize", "--model", D, "--stages", "0"], "--stages"),
    ("profile-zero-repeats", ["profile", "--model", D, "--repeats", "0"], "repeats"),
    ("profile-unknown-link", ["profile", "--model", D, "--link", "warp9"], "warp9"),
    ("federate-fraction-above-one", ["federate", "--model", D, "--fraction", "1.5"], "fraction"),
    ("federate-bad-compression", ["federate", "--model", D, "--compress", "topk:2"], "topk:2"),
    ("federate-zero-rounds", ["federate", "--model", D, "--rounds", "0"], "rounds"),
    # URLs and addresses
    ("catalog-unsupported-scheme", ["catalog", "ls", "--catalog", "ftp://host/x"], "ftp"),
    ("catalog-s3-no-bucket", ["catalog", "ls", "--catalog", "s3:///prefix"], "no bucket"),
    ("catalog-credentials-in-url", ["catalog", "ls", "--catalog", "s3://AKIAXX:hunter2secret@bucket/x"],
     "credentials must not be put in the catalog URL"),
    ("dask-address-no-scheme", ["optimize", "--model", D, "--dask-address", "localhost:1"], "tcp://HOST:PORT"),
    ("dask-address-unreachable", ["optimize", "--model", D, "--dask-address", "tcp://127.0.0.1:{port}"],
     "cannot reach the Dask scheduler"),
    # SQL: read-only, one statement, nothing outside the catalog
    ("sql-copy", ["catalog", "query", "COPY (SELECT 1) TO '{tmp}/leak.csv'"], "read-only"),
    ("sql-attach", ["catalog", "query", "ATTACH '{tmp}/leak.db' AS x"], "read-only"),
    ("sql-install", ["catalog", "query", "INSTALL httpfs"], "read-only"),
    ("sql-load", ["catalog", "query", "LOAD httpfs"], "read-only"),
    ("sql-read-file", ["catalog", "query", "SELECT * FROM read_csv_auto('/etc/passwd')"], "outside the catalog"),
    ("sql-two-statements", ["catalog", "query", "SELECT 1; SELECT 2"], "exactly one SELECT"),
    ("sql-create", ["catalog", "query", "CREATE TABLE t AS SELECT 1"], "read-only"),
    ("sql-set", ["catalog", "query", "SET threads = 1"], "read-only"),
    ("sql-malformed", ["catalog", "query", "SELEC 1"], "malformed SQL"),
    # deployments
    ("serve-unknown-deployment", ["serve", "--only", "nope/nothing", "--dry-run"], "unknown deployment"),
    ("serve-bad-deployment-file", ["serve", "--file", "{tmp}/notjson.json", "--dry-run"], "not valid YAML"),
    # issue 17: bounds before anything runs, damaged catalogs, empty graphs, output folders, endpoint secrets
    ("partition-stages-above-bound", ["partition", "--graph", "{tmp}/ok.json", "--stages", "1000000000"],
     "between 1 and 1024"),
    ("partition-stages-not-an-int", ["partition", "--graph", "{tmp}/ok.json", "--stages", "1e20"], "--stages"),
    ("optimize-stages-above-bound", ["optimize", "--model", D, "--stages", "1000000000"], "between 1 and 1024"),
    ("graph-no-nodes", ["graph", "import", "{tmp}/empty.json"], "no nodes"),
    ("partition-graph-no-nodes", ["partition", "--graph", "{tmp}/empty.json", "--stages", "2"], "no nodes"),
    ("quantize-export-missing-folder", ["quantize", "--model", D, "--size-budget", "4096", "--export",
                                        "{tmp}/no_such_folder/plan.json"], "does not exist"),
    ("catalog-ls-zero-byte-parquet", ["catalog", "ls", "--catalog", "{tmp}/zcat"], "cannot read table 'runs'"),
    ("catalog-show-zero-byte-parquet", ["catalog", "show", "r0", "--catalog", "{tmp}/zcat"], "cannot read table"),
    ("catalog-compact-zero-byte-parquet", ["catalog", "compact", "--catalog", "{tmp}/zcat"],
     "is not a readable Parquet file"),
    ("s3-endpoint-with-credentials", ["catalog", "ls", "--catalog", "s3://bucket/x", "--s3-endpoint",
                                      "http://AKIAXX:hunter2secret@127.0.0.1:9"], "credentials must not be put"),
    ("federate-data-text-file", ["federate", "--model", "forgeflow:digits_mlp", "--data", "{tmp}/data.txt"],
     "data.txt"),
    ("federate-data-object-npz", ["federate", "--model", "forgeflow:digits_mlp", "--data", "{tmp}/objects.npz"],
     "object (pickled) arrays"),
    ("federate-data-zero-byte-parquet", ["federate", "--model", "forgeflow:digits_mlp", "--data",
                                         "{tmp}/empty.parquet"], "not a readable Parquet file"),
]

# (environment variable, value, what the message must name): refused before any run row is written
BAD_SETTINGS = [
    ("FORGEFLOW_DASK_WORKERS", "0", "FORGEFLOW_DASK_WORKERS must be >= 1"),
    ("FORGEFLOW_DASK_MEMORY_LIMIT", "lots", "FORGEFLOW_DASK_MEMORY_LIMIT 'lots'"),
    ("FORGEFLOW_DASK_MEMORY_LIMIT", "-1GiB", "FORGEFLOW_DASK_MEMORY_LIMIT"),
    ("FORGEFLOW_DASK_THREADS", "0", "FORGEFLOW_DASK_THREADS must be >= 1"),
]


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "notjson.json").write_text("{this is not json")
    (tmp_path / "cycle.json").write_text(json.dumps(MSR_CYCLE))
    (tmp_path / "dangling.json").write_text(json.dumps(MSR_DANGLING))
    (tmp_path / "negative.json").write_text(json.dumps(MSR_NEGATIVE))
    (tmp_path / "ok.json").write_text(json.dumps({"nodes": [{"id": 1, "fpgaLatency": 1}, {"id": 2, "fpgaLatency": 2}],
                                                  "edges": [{"sourceId": 1, "destId": 2, "cost": 0.1}]}))
    (tmp_path / "empty.json").write_text(json.dumps({"nodes": [], "edges": []}))
    (tmp_path / "data.txt").write_text("1,2,3\n")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 8, dtype=object), y=np.arange(8))
    (tmp_path / "empty.parquet").write_bytes(b"")
    _zero_byte_catalog(tmp_path / "zcat")
    return tmp_path


def _zero_byte_catalog(path: Path) -> None:
    """Two runs and one 0-byte Parquet file among the runs files (a torn copy, a full disk)."""
    from forgeflow.catalog import open_catalog

    cat = open_catalog(str(path))
    for i in range(2):
        cat.append("runs", [{"flow": "f", "status": "running", "parameters": "{}"}], run_id=f"r{i}")
    day = cat.visible_files("runs")[0].rsplit("/", 1)[0]
    cat.store.put(f"{day}/part-00000000000000000000-empty0000000.parquet", b"")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _argv(args: list[str], tmp: Path, cat: Path) -> list[str]:
    port = free_port()
    argv = [a.replace("{tmp}", str(tmp)).replace("{port}", str(port)) for a in args]
    if "--catalog" not in argv and argv[0] not in ("serve", "deploy"):
        argv += ["--catalog", str(cat)]
    return argv


def test_at_least_twenty_cases_across_the_cli():
    assert len(CASES) >= 20
    commands = {c[1][0] for c in CASES}
    assert {"graph", "partition", "optimize", "profile", "quantize", "federate", "catalog", "serve"} <= commands


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case,args,message", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_one_clear_error_nothing_written(case, args, message, inputs, capsys, monkeypatch):
    from forgeflow.flows.cli import main

    monkeypatch.setenv("FORGEFLOW_DASK_WORKERS", "1")
    cat = inputs / "cat"
    before = _files(inputs)
    with pytest.raises(SystemExit) as exc:
        main(_argv(args, inputs, cat))
    out, err = capsys.readouterr()
    assert exc.value.code == 2, (case, out, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert message in err, err
    assert "Traceback" not in err and "Traceback" not in out
    assert "hunter2secret" not in err + out  # a secret in a refused URL is not echoed back
    created = _files(inputs) - before
    assert not [f for f in created if f.endswith(".parquet") or "leak" in f or f.endswith("out.json")], created


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name,value,message", BAD_SETTINGS, ids=[f"{n}={v}" for n, v, _ in BAD_SETTINGS])
@pytest.mark.parametrize("command", ["partition", "federate"])
def test_bad_setting_one_line_exit_2_no_run_row(command, name, value, message, inputs, capsys, monkeypatch):
    """FORGEFLOW_DASK_WORKERS=0 used to hang and FORGEFLOW_DASK_MEMORY_LIMIT=lots to fail after the run row was
    written: a valid command with a bad setting is refused before anything runs."""
    from forgeflow.flows.cli import main

    monkeypatch.setenv(name, value)
    cat = inputs / "cat"
    argv = {"partition": ["partition", "--graph", str(inputs / "ok.json"), "--stages", "2"],
            "federate": ["federate", "--model", "forgeflow:digits_mlp", "--rounds", "1"]}[command]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--catalog", str(cat)])
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert exc.value.code == 2 and len(lines) == 1 and message in err, err
    assert "Traceback" not in err + out
    assert not (cat.exists() and list(cat.rglob("*.parquet")))  # no run row, nothing at all


@pytest.mark.parametrize("args,message", [
    (["quantize", "--model", D, "--size-budget", "-1"], "budget"),
    (["catalog", "query", "ATTACH 'x.db' AS x"], "read-only"),
    (["deploy"], "needs a Prefect server: set PREFECT_API_URL"),
])
def test_in_a_fresh_interpreter(tmp_path, args, message):
    cat = tmp_path / "cat"
    extra = [] if args[0] == "deploy" else ["--catalog", str(cat)]
    p = forgeflow(*args, *extra, env={"PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path / "home")})
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (cat.exists() and list(cat.rglob("*.parquet")))
