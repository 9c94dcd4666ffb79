"""The search flow under a real Prefect server, and `forgeflow search` bad input from the command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from tests._cli import run_cli as forgeflow_cli


@pytest.mark.slow
def test_search_flow_writes_every_table(prefect_harness, tmp_path):
    import torch
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.search import search_flow
    from forgeflow.tasks.supernet.pipeline import SearchRequest

    torch.set_num_threads(1)
    url = str(tmp_path / "cat")
    flow = search_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    req = SearchRequest(epochs=1, budget=10, n_accuracy=8, n_latency=8, latency_limit_ms=1e6, scratch_compare=1,
                        stage_channels=(4, 8, 8), latency_batch=8)
    out = flow(request=req.to_dict(), catalog=url)
    cat = open_catalog(url)
    run = out["run_id"]
    assert cat.run(run)["status"] == "completed"
    assert out["evaluations"] == 10 and out["best"] is not None
    models = cat.read("supernet_models", filter=pc.field("run_id") == run).to_pylist()
    assert len(models) == 1 and 0 <= models[0]["largest_accuracy_pct"] <= 100
    assert cat.read("supernet_predictors", filter=pc.field("run_id") == run).num_rows == 2
    cands = cat.read("search_candidates", filter=pc.field("run_id") == run)
    assert cands.num_rows == 10 and len(set(cands.column("arch").to_pylist())) == 10
    front = cat.read("search_fronts", filter=pc.field("run_id") == run).to_pylist()
    assert len(front) == len(out["front"]) >= 1
    assert sum(r["best_under_limit"] for r in front) == 1
    assert cat.get_object(out["plot"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert cat.read("supernet_gaps", filter=pc.field("run_id") == run).num_rows == 1
    weights = cat.get_arrays(models[0]["weights_key"])
    assert weights["head.weight"].shape == (10, 8)


def test_request_validation_names_the_option():
    from forgeflow.tasks.supernet.pipeline import SearchRequest, SearchRequestError

    for kwargs, needle in (({"latency_limit_ms": -1.0}, "--latency-limit-ms"), ({"source": "oracle"}, "--source"),
                           ({"epochs": 0}, "--epochs"), ({"n_accuracy": 2}, "predictors")):
        with pytest.raises(SearchRequestError, match=needle):
            SearchRequest(**kwargs).validate()


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`forgeflow search ARGS` in this process (tests/_cli.py)."""
    return forgeflow_cli("search", *args, env={"FORGEFLOW_DASK_WORKERS": "1"})


@pytest.mark.parametrize("args, needle", [
    (["--budget", "2"], "--budget"),
    (["--data", "/nonexistent/d.npz"], "not found"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(args, needle, tmp_path):
    url = tmp_path / "cat"
    proc = run_cli(*args, "--catalog", str(url), "--json", tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert proc.stdout == ""
    assert not (url / "tables" / "search_candidates").exists()
    assert not (url / "tables" / "supernet_models").exists()
