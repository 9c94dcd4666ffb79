"""The quantize flow under a real Prefect server, and `forgeflow quantize` bad input from the command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from tests._cli import run_cli as forgeflow_cli


@pytest.mark.slow
def test_quantize_flow_writes_every_table_and_reuses_a_run(prefect_harness, tmp_path):
    import torch
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.quantize import quantize_flow
    from forgeflow.tasks.quantize.pipeline import QuantizeRequest

    torch.set_num_threads(1)
    url = str(tmp_path / "cat")
    flow = quantize_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    req = QuantizeRequest(model="forgeflow:digits_cnn", epochs=3, size_budget=4000, hutchinson_samples=8,
                          pareto_points=3, bits=(2, 4, 8, 32))
    out = flow(request=req.to_dict(), catalog=url)
    cat = open_catalog(url)
    run = out["run_id"]
    assert cat.run(run)["status"] == "completed"
    assert out["status"] == "optimal" and out["totals"]["size_bytes"] <= 4000
    assert out["dual_bound"] <= out["objective"] + 1e-12
    sens = cat.read("quant_sensitivities", filter=pc.field("run_id") == run)
    assert sens.num_rows == 3 * 4  # 3 layers x (2, 4, 8, float)
    plans = cat.read("quant_plans", filter=(pc.field("run_id") == run) & (pc.field("plan_id") == "requested"))
    assert dict(zip(plans.column("layer").to_pylist(), plans.column("bits").to_pylist())) == \
        dict(zip(out["layers"], out["bits"]))
    evals = cat.read("quant_evaluations", filter=pc.field("run_id") == run).to_pylist()
    kinds = {e["kind"] for e in evals}
    assert {"requested", "pareto", "uniform", "float"} <= kinds
    assert all(0.0 <= e["accuracy"] <= 1.0 for e in evals)
    assert cat.get_object(out["plot"])[:8] == b"\x89PNG\r\n\x1a\n"
    weights = cat.get_arrays(out["model_record"]["weights_key"])
    assert weights["conv1.weight"].shape == (16, 1, 3, 3)

    # a second run re-plans the stored model and sensitivities under a BOPs budget
    req2 = QuantizeRequest(source_run=run, bops_budget=3e6, pareto_points=2, bits=(2, 4, 8, 32))
    out2 = flow(request=req2.to_dict(), catalog=url)
    assert out2["sensitivity"] == {"layers": 3, "reused_from": run, "rows_run_id": out2["run_id"]}
    assert out2["totals"]["bops"] <= 3e6
    assert out2["model_record"]["weights_key"] == out["model_record"]["weights_key"]


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`forgeflow quantize ARGS` in this process (tests/_cli.py): what the command answers, without paying a fresh
    interpreter per case."""
    return forgeflow_cli("quantize", *args, env={"FORGEFLOW_DASK_WORKERS": "1"})


BAD = [
    (["--model", "forgeflow:digits_cnn", "--size-budget", "1000"], "smallest achievable model size is 2740 bytes"),
    (["--model", "forgeflow:digits_cnn", "--tie", "conv1,conv7"], "unknown layer(s) 'conv7'"),
    (["--model", "torch.nn:Identity"], "no quantizable layer"),
    (["--model", "forgeflow:digits_cnn", "--bits", "2,x"], "--bits must be"),
    (["--model", "forgeflow:digits_cnn", "--latency-budget", "3"], "--latency-table"),
    (["--run", "nope"], "has no trained model"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path):
    cat = tmp_path / "cat"
    p = run_cli(*args, "--catalog", str(cat), "--json", tmp_path=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    assert message in p.stderr and p.stdout == ""
    assert len([ln for ln in p.stderr.strip().splitlines() if ln.strip()]) == 1
    assert open_catalog(str(cat)).runs().num_rows == 0


@pytest.mark.slow
def test_quantize_flow_on_a_one_thread_dask_cluster(prefect_harness, tmp_path):
    # the plan step submits its Pareto sweep to the cluster it runs on: with one worker thread this only
    # finishes if the step's thread secedes while it waits (regression: a plain Client deadlocked here)
    from prefect_dask import DaskTaskRunner

    from forgeflow.flows.quantize import quantize_flow
    from forgeflow.tasks.quantize.pipeline import QuantizeRequest

    runner = DaskTaskRunner(cluster_class="distributed.LocalCluster",
                            cluster_kwargs={"n_workers": 1, "threads_per_worker": 1, "processes": True,
                                            "dashboard_address": None})
    req = QuantizeRequest(model="forgeflow:digits_cnn", epochs=2, size_budget=4000, hutchinson_samples=4,
                          pareto_points=3, bits=(2, 4, 8, 32))
    out = quantize_flow.with_options(task_runner=runner)(request=req.to_dict(), catalog=str(tmp_path / "cat"))
    assert out["status"] == "optimal" and len([p for p in out["plans"] if p["kind"] == "pareto"]) == 3
