"""The federated_training flow under Prefect on a Dask LocalCluster, and `forgeflow federate` end to end."""

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from forgeflow.tasks.federated.config import Compression, FederatedConfig, Privacy
from tests._cli import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_flow_on_dask_records_rounds_weights_and_resumes(prefect_harness, tmp_path, monkeypatch, request):
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    from forgeflow.flows.federated import federated_training

    # one LocalCluster (two worker processes) for all three runs, warm as a `forgeflow up` cluster (a runner given
    # cluster_class would start one per run)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    request.addfinalizer(cluster.close)
    runner = DaskTaskRunner(address=cluster.scheduler_address)
    cfg = FederatedConfig(model="forgeflow:digits_mlp", clients=6, rounds=3, fraction=0.5, local_epochs=1, lr=0.3,
                          compression=Compression.parse("int8"),
                          privacy=Privacy(mode="client", clip=1.0, noise=0.5))
    url = str(tmp_path / "cat")
    result = federated_training.with_options(task_runner=runner)(config=cfg.to_dict(), catalog=url)
    cat = open_catalog(url)
    assert cat.run(result["run_id"])["status"] == "completed"
    rounds = cat.read("federated_rounds", filter=pc.field("run_id") == result["run_id"]).to_pylist()
    assert sorted(r["round"] for r in rounds) == [1, 2, 3]
    assert all(r["epsilon"] > 0 and r["compression"] == "int8" for r in rounds)
    eps = sorted(r["epsilon"] for r in rounds)
    assert result["epsilon"] == pytest.approx(eps[-1])
    weights = cat.get_arrays(result["weights_key"])["weights"]
    assert weights.size == 64 * 64 + 64 + 64 * 10 + 10
    assert cat.get_object(result["plot"])[:8] == b"\x89PNG\r\n\x1a\n"
    # same configuration again: the finished step is reused from the catalog (tasks.step_cache)
    cached = federated_training.with_options(task_runner=runner)(config=cfg.to_dict(), catalog=url)
    assert cached["weights_key"] == result["weights_key"] and cached["accuracy"] == result["accuracy"]
    from forgeflow.tasks.step_cache import reuses

    assert [r["status"] for r in reuses(cat, cached["run_id"])] == ["reused"]
    # and with the command's step cache off the step runs on the same warm workers (whose own environment says on:
    # the setting travels with the task), resumes after round 3 and trains nothing
    monkeypatch.setenv("FORGEFLOW_STEP_CACHE", "0")
    again = federated_training.with_options(task_runner=runner)(config=cfg.to_dict(), catalog=url)
    assert [r["status"] for r in reuses(cat, again["run_id"])] == ["completed"]
    assert again["resumed_from_round"] == 3 and again["accuracy"] == result["accuracy"]


def forgeflow(*args, cwd):
    """`forgeflow ARGS` in this process (tests/_cli.py), from ``cwd``."""
    return run_cli(*args, env={"FORGEFLOW_DASK_WORKERS": "1"}, cwd=cwd)


@pytest.mark.slow
def test_cli_json_last_line(prefect_harness, tmp_path):
    url = str(tmp_path / "cat")
    p = forgeflow("federate", "--model", "forgeflow:digits_mlp", "--clients", "5", "--rounds", "2",
                  "--compress", "topk:0.1", "--dp", "record", "--dp-clip", "1.0", "--dp-epsilon", "8",
                  "--catalog", url, "--json", cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["rounds"] == 2 and 0.0 <= out["accuracy"] <= 1.0 and 0 < out["epsilon"] <= 8.0
    assert out["uplink_bytes"] > 0 and out["downlink_bytes"] > out["uplink_bytes"]


@pytest.mark.parametrize("args,message", [
    (["--compress", "topk:7"], "compression ratio"),
    (["--dp", "record", "--dp-noise", "1", "--model", "forgeflow:digits_cnn"], "batch-norm"),
    (["--dp", "client"], "exactly one of --dp-noise"),
    (["--model", "torchvision:nope"], "unknown torchvision model"),
    (["--fraction", "0"], "--fraction"),
])
def test_cli_bad_input_exit_2_and_nothing_written(tmp_path, args, message):
    url = tmp_path / "cat"
    p = forgeflow("federate", *args, "--catalog", str(url), cwd=ROOT)
    assert p.returncode == 2 and message in p.stderr and not url.exists()
