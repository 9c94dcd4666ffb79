"""The optimize flow under a real Prefect (the session's API server) on a real Dask LocalCluster."""

from __future__ import annotations

import base64
import json

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog


@pytest.fixture(scope="module")
def dask_runner():
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": 1, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def test_optimize_flow_writes_summary_and_run_rows(prefect_harness, optimized_cnn):
    """What the flow wrote in the session's one full optimize run (tests/flows/conftest.py: `forgeflow optimize
    --model forgeflow:digits_cnn --stages 2` on a Dask LocalCluster, reporting to the session's Prefect API)."""
    url, p = optimized_cnn
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    cat = open_catalog(url)
    run = cat.run(result["run_id"])
    assert run["status"] == "completed" and run["flow"] == "optimize"
    assert run["flow_run_id"]  # the Prefect flow-run id is recorded
    assert json.loads(run["parameters"])["model"] == "forgeflow:digits_cnn"
    rows = cat.read("model_summaries", filter=pc.field("run_id") == result["run_id"])
    assert sum(rows.column("params").to_pylist()) == result["model_summary"]["params"] == 6186
    # lineage: every file the run wrote is recorded
    arts = cat.read("artifacts", filter=pc.field("run_id") == result["run_id"]).to_pylist()
    assert {a["table_name"] for a in arts} >= {"model_summaries", "runs"}
    # the Prefect artifact of that flow run embeds the run's plots (the UI cannot open a catalog path) and names
    # their keys
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    plots = [v for step in result.values() if isinstance(step, dict) for v in step.values()
             if isinstance(v, str) and v.startswith("objects/") and v.endswith(".png")]
    assert plots
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["optimize-summary"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[run["flow_run_id"]])))
    assert len(found) == 1
    md = found[0].data
    for key in plots:
        assert f"forgeflow catalog get {key}" in md
    embedded = {base64.b64decode(part.split(")", 1)[0]) for part in md.split("data:image/png;base64,")[1:]}
    from forgeflow.flows.artifacts import MAX_EMBED_BYTES

    small = {data for data in map(cat.get_object, plots) if len(data) <= MAX_EMBED_BYTES}
    assert embedded and embedded == small  # every plot small enough, each exactly the catalog's bytes


def test_bad_input_writes_nothing_and_a_failed_step_records_failure(prefect_harness, tmp_path, monkeypatch):
    from prefect.task_runners import ThreadPoolTaskRunner

    import forgeflow.flows.optimize as opt
    from forgeflow.tasks.errors import ForgeflowError

    url = str(tmp_path / "cat")
    flow = opt.optimize_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    with pytest.raises(ForgeflowError, match="cannot run on an input"):  # validated on entry: no run row at all
        flow(model="forgeflow:digits_cnn", stages=2, catalog=url, input_shape=[1, 3, 8, 8])
    assert not [p for p in (tmp_path / "cat").rglob("*") if p.is_file()]

    class Broken:  # a step that fails after the run started
        @staticmethod
        def submit(*args, **kwargs):
            raise ForgeflowError("summary step failed: disk full")

    monkeypatch.setattr(opt, "summarize_model_step", Broken)
    with pytest.raises(ForgeflowError, match="disk full"):
        flow(model="forgeflow:digits_cnn", stages=2, catalog=url)
    runs = open_catalog(url).runs().to_pylist()
    assert [r["status"] for r in runs] == ["failed"]
    assert "disk full" in runs[0]["error"]


def test_recorded_run_redacts_secrets(tmp_path):
    from forgeflow.flows.runtime import recorded_run

    cat = open_catalog(str(tmp_path / "c"))
    with recorded_run(cat, "f", {"aws_secret_access_key": "SECRET1", "url": "s3://user:pw@bucket/x",
                                 "token": "abc"}) as run:
        pass
    stored = cat.run(run.id)["parameters"]
    assert "SECRET1" not in stored and "pw@" not in stored and "abc" not in stored
