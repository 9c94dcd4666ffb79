"""profile_models / import_graphs flows on a real Prefect + Dask LocalCluster, and `forgeflow profile` / `graph`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from forgeflow.tasks.profiling.graph_store import read_graph
from tests.profiling.test_links_pipedream import GRAPH_TXT
from tests.profiling.test_msr_io import MSR

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests.profiling._models:tiny_cnn"


@pytest.fixture(scope="module")
def two_workers():
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def test_profile_models_flow_one_model_per_worker(prefect_harness, two_workers, tmp_path):
    from forgeflow.flows.profile_models import profile_models

    from forgeflow.flows import progress

    url = str(tmp_path / "cat")
    models = [TINY, "tests.profiling._models:shared_linear"]
    seen: list[tuple[str, int, int]] = []
    progress.set_reporter(lambda step, done, total: seen.append((step, done, total)))
    try:
        result = profile_models.with_options(task_runner=two_workers)(
            models=models, catalog=url, input_shape=[1, 3, 16, 16], repeats=2, warmup=1)
    finally:
        progress.set_reporter(None)
    # per-stage progress travels from the Dask workers to the flow: each model's bar moves through the stages
    for m in models:
        values = [d for step, d, _ in seen if step == m]
        assert values[-1] == 100 and any(0 < v < 100 for v in values), values
        assert values == sorted(values)
    cat = open_catalog(url)
    assert cat.run(result["run_id"])["status"] == "completed"
    got = {g["model"]: g for g in result["graphs"]}
    assert set(got) == set(models)
    for g in result["graphs"]:
        back = read_graph(cat, g["graph_id"])
        assert back.graph_id == g["graph_id"] and back.total_flops == g["flops"] == g["flops_reference"]
        assert back.meta["worker"]["torch_threads"] == 1
        assert back.meta["timing"]["context"]["torch_threads"] == 1
    heads = cat.read("graphs", filter=pc.field("run_id") == result["run_id"]).to_pylist()
    assert sorted(h["model"] for h in heads) == sorted(models)
    arts = cat.read("artifacts", filter=pc.field("run_id") == result["run_id"]).to_pylist()
    assert {a["table_name"] for a in arts} >= {"graphs", "graph_nodes", "graph_edges", "runs"}


def test_profile_models_flow_rejects_bad_input_before_writing(prefect_harness, tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.profile_models import profile_models
    from forgeflow.tasks.errors import UnknownModelError

    url = tmp_path / "cat"
    with pytest.raises(UnknownModelError, match="unknown torchvision model"):
        profile_models.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(
            models=[TINY, "torchvision:nope"], catalog=str(url), input_shape=[1, 3, 16, 16], repeats=1)
    assert not url.exists()


def test_import_graphs_flow(prefect_harness, tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.profile_models import import_graphs

    msr = tmp_path / "tiny.json"
    msr.write_text(json.dumps(MSR))
    pd = tmp_path / "resnet_tiny" / "graph.txt"
    pd.parent.mkdir()
    pd.write_text(GRAPH_TXT)
    url = str(tmp_path / "cat")
    result = import_graphs.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
        paths=[str(msr), str(pd)], catalog=url, link="10gbe")
    cat = open_catalog(url)
    names = {g["name"]: g for g in result["graphs"]}
    assert set(names) == {"tiny", "resnet_tiny"}
    assert read_graph(cat, names["tiny"]["graph_id"]).meta["source"] == "msr"
    assert read_graph(cat, names["resnet_tiny"]["graph_id"]).meta["link"]["name"] == "10gbe"


def run_cli(*args: str, home: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "FORGEFLOW_DASK_WORKERS": "1", "PREFECT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "forgeflow.flows.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_cli_graph_import_ls_export_round_trip(prefect_harness, tmp_path, capsys):
    from forgeflow.flows.cli import main
    from forgeflow.tasks.profiling.msr_io import dump_msr_json
    from forgeflow.tasks.profiling.profile import profile_model

    g = profile_model(TINY, (1, 3, 16, 16), repeats=1, warmup=0)
    out, cat = dump_msr_json(g, tmp_path / "tiny.json"), str(tmp_path / "cat")
    main(["graph", "import", str(out), "--catalog", cat, "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["graph_id"] == g.graph_id
    main(["graph", "ls", "--catalog", cat, "--json"])
    assert [r["graph_id"] for r in json.loads(capsys.readouterr().out)["graphs"]] == [g.graph_id]
    for fmt in ("msr", "forgeflow", "pipedream"):
        main(["graph", "export", g.graph_id, str(tmp_path / f"again.{fmt}"), "--format", fmt, "--catalog", cat])
    assert json.loads((tmp_path / "again.msr").read_text()) == json.loads(out.read_text())
    from forgeflow.tasks.profiling.graph import CostGraph

    assert CostGraph.from_dict(json.loads((tmp_path / "again.forgeflow").read_text())) == g
    assert (tmp_path / "again.pipedream").read_text().startswith("input_1 -- input -- forward_compute_time=")


@pytest.mark.slow
def test_cli_profile_json_export_and_reimport(prefect_harness, tmp_path, capsys):
    """The profile command (in this process through tests/_cli.py, on its own Dask LocalCluster; tests/ops/
    test_security.py runs it in a fresh interpreter); the import and listing of its export."""
    from forgeflow.flows.cli import main
    from tests._cli import run_cli as run_here

    cat, out = str(tmp_path / "cat"), tmp_path / "tiny_msr.json"
    p = run_here("profile", "--model", TINY, "--input-shape", "1,3,16,16", "--repeats", "2", "--warmup", "1",
                 "--export-msr", str(out), "--catalog", cat, "--json", env={"FORGEFLOW_DASK_WORKERS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    res = json.loads(lines[-1])
    assert all(json.loads(line) for line in lines)
    assert res["flops"] == 110_752 and res["params"] == 330 and res["nodes"] == 7 and res["edges"] == 6
    assert len(res["graph_id"]) == 16 and res["capture"] == "fx"
    # the msr export imports back as the very same graph
    main(["graph", "import", str(out), "--catalog", cat, "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["graph_id"] == res["graph_id"]
    main(["graph", "ls", "--catalog", cat, "--json"])
    assert [g["graph_id"] for g in json.loads(capsys.readouterr().out)["graphs"]] == [res["graph_id"]] * 2
    main(["graph", "export", res["graph_id"], str(tmp_path / "again.json"), "--catalog", cat])
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(out.read_text())


BAD = [
    (["profile", "--model", "torchvision:nope"], "unknown torchvision model 'nope'"),
    (["profile", "--model", "tests.profiling._models:broken_factory"], "raised RuntimeError: weights file corrupted"),
    (["profile", "--model", "tests.profiling._models:data_dependent", "--input-shape", "4"], "cannot capture"),
    (["profile", "--model", TINY, "--input-shape", "1,5,16,16"], "rejected an input of shape (1, 5, 16, 16)"),
    (["profile", "--model", TINY, "--granularity", "block"], "granularity must be"),
    (["profile", "--model", TINY, "--link", "carrier_pigeon"], "unknown link profile 'carrier_pigeon'"),
    (["profile", "--model", TINY, "--input-shape", "1,a"], "input shape must be"),
    (["profile", "--model", TINY, "--model", "forgeflow:digits_cnn", "--export-msr", "x.json"], "one --model"),
    (["graph", "import", "MALFORMED"], "missing field 'fpgaLatency'"),
    (["graph", "import", "NOFILE"], "graph file not found"),
    (["graph", "export", "0123456789abcdef", "out.json"], "no graph '0123456789abcdef'"),
]


def _args(args, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [{"id": 1}], "edges": []}')
    return [str(bad) if a == "MALFORMED" else str(tmp_path / "missing.json") if a == "NOFILE" else a for a in args]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a[:3]) for a, _ in BAD])
def test_cli_bad_input_one_clear_error_nothing_written(tmp_path, capsys, args, message):
    from forgeflow.flows.cli import main

    cat = tmp_path / "cat"
    if args[:2] == ["graph", "export"]:
        open_catalog(str(cat))  # an existing, empty catalog
    with pytest.raises(SystemExit) as exit_:
        main([*_args(args, tmp_path), "--catalog", str(cat)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert message in err.replace("\n", " ")
    assert "Traceback" not in err
    assert not (cat / "tables").exists()


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [BAD[1], BAD[8]], ids=["factory raises", "malformed file"])
def test_cli_bad_input_in_a_real_process(tmp_path, args, message):
    cat = tmp_path / "cat"
    p = run_cli(*_args(args, tmp_path), "--catalog", str(cat), home=tmp_path / "ph")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr.replace("\n", " ") and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2
    assert not cat.exists()
