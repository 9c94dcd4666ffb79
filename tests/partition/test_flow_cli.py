"""The partition_graph flow under a real Prefect server, the Prefect step on a Dask LocalCluster, and
`forgeflow partition` bad input from the command line (one line on stderr, exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from tests._cli import run_cli as forgeflow_cli

# a 6-node msr-fiddle graph: two branches of different weight joined at the end, nodes 2 and 3 co-located
MSR = {
    "maxFPGAs": 3, "maxSizePerFPGA": 100.0,
    "nodes": [{"id": 1, "fpgaLatency": 1.0, "size": 10.0}, {"id": 2, "fpgaLatency": 4.0, "size": 10.0, "colorClass": 7},
              {"id": 3, "fpgaLatency": 2.0, "size": 10.0, "colorClass": 7}, {"id": 4, "fpgaLatency": 3.0, "size": 10.0},
              {"id": 5, "fpgaLatency": 5.0, "size": 10.0}, {"id": 6, "fpgaLatency": 1.0, "size": 10.0}],
    "edges": [{"sourceId": 1, "destId": 2, "cost": 0.5}, {"sourceId": 1, "destId": 4, "cost": 0.5},
              {"sourceId": 2, "destId": 3, "cost": 0.25}, {"sourceId": 3, "destId": 6, "cost": 0.25},
              {"sourceId": 4, "destId": 5, "cost": 0.75}, {"sourceId": 5, "destId": 6, "cost": 0.125}],
}


def write_graph(tmp_path: Path, data=None) -> Path:
    p = tmp_path / "g.json"
    p.write_text(json.dumps(MSR if data is None else data))
    return p


@pytest.mark.slow
def test_partition_flow_writes_plan_loads_bounds_and_plot(prefect_harness, tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.partition import partition_graph
    from forgeflow.tasks.partition.cost import validate_plan
    from forgeflow.tasks.partition.problem import PartitionProblem

    url = str(tmp_path / "cat")
    flow = partition_graph.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    out = flow(stages=2, graph_file=str(write_graph(tmp_path)), time_limit=10, catalog=url)
    cat = open_catalog(url)
    assert cat.run(out["run_id"])["status"] == "completed"
    assert out["k"] == 2 and len(out["stages"]) == 2 and out["ratio"] == pytest.approx(1.0)
    # the plan recomputed independently from the file gives the reported bottleneck
    problem = PartitionProblem.from_msr_dict(MSR, k=2)
    stage_of = {nid: s for s, ids in enumerate(out["stages"]) for nid in ids}
    import numpy as np

    a = np.array([stage_of[nid] for nid in problem.node_ids])
    assert validate_plan(problem, a).bottleneck == pytest.approx(out["bottleneck"])
    flt = pc.field("run_id") == out["run_id"]
    assert cat.read("partition_plans", filter=flt).num_rows == 6
    assert cat.read("partition_stage_loads", filter=flt).num_rows == 2
    res = cat.read("partition_results", filter=flt).to_pylist()[0]
    assert res["graph_id"] == out["graph_id"] and res["bottleneck_ms"] == pytest.approx(out["bottleneck"])
    assert cat.read("partition_bounds", filter=flt).num_rows >= 4
    assert cat.get_object(out["plot"])[:8] == b"\x89PNG\r\n\x1a\n"
    # the same graph again by its catalog id
    out2 = flow(stages=3, graph_id=out["graph_id"], time_limit=10, catalog=url)
    assert out2["graph_id"] == out["graph_id"] and out2["bottleneck"] <= out["bottleneck"] + 1e-9


def test_partition_step_fans_out_on_a_dask_cluster(tmp_path):
    from distributed import Client, LocalCluster

    from forgeflow.tasks.partition.store import partition_catalog_graph
    from forgeflow.tasks.profiling.graph_store import write_graph as store_graph
    from forgeflow.tasks.profiling.msr_io import load_msr_json

    cat = open_catalog(str(tmp_path / "cat"))
    graph = load_msr_json(write_graph(tmp_path))
    store_graph(cat, graph, run_id="r0")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        out = partition_catalog_graph(cat, "r1", graph.graph_id, 3, time_limit=10, executor=client)
    assert out["ratio"] == pytest.approx(1.0) and out["status"] == "optimal"
    assert cat.read("partition_plans", filter=pc.field("result_id") == out["result_id"]).num_rows == 6


def test_step_fans_out_without_deadlock_on_a_one_thread_cluster(tmp_path):
    # the step runs on the cluster's only thread; its fan-out must hand that thread back while it waits
    from distributed import Client, LocalCluster

    from forgeflow.tasks.partition.steps import partition_step
    from forgeflow.tasks.profiling.graph_store import write_graph as store_graph
    from forgeflow.tasks.profiling.msr_io import load_msr_json

    url = str(tmp_path / "cat")
    graph = load_msr_json(write_graph(tmp_path))
    store_graph(open_catalog(url), graph, run_id="r0")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        out = client.submit(partition_step.fn, url, "r1", graph.graph_id, 2, 10.0).result(timeout=240)
    assert out["k"] == 2 and out["ratio"] == pytest.approx(1.0)
    methods = {m["method"] for m in out["methods"]}
    assert "ideals_dp" in methods


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`forgeflow partition ARGS` in this process (tests/_cli.py); the real console process is tested in
    tests/flows/test_processes.py."""
    return forgeflow_cli("partition", *args, env={"FORGEFLOW_DASK_WORKERS": "1"})


def _cycle():
    d = json.loads(json.dumps(MSR))
    d["edges"].append({"sourceId": 6, "destId": 1, "cost": 0.1})
    return d


def _negative():
    d = json.loads(json.dumps(MSR))
    d["nodes"][3]["fpgaLatency"] = -1.0
    return d


def _dangling():
    d = json.loads(json.dumps(MSR))
    d["edges"].append({"sourceId": 6, "destId": 99, "cost": 0.1})
    return d


BAD = [
    (_cycle, ["--stages", "2"], "cycle"),
    (None, ["--stages", "0"], "--stages must be between 1 and 1024"),
    (_negative, ["--stages", "2"], "expected a finite number >= 0"),
    (_dangling, ["--stages", "2"], "does not exist"),
    (None, ["--stages", "2", "--memory-cap", "15"], "memory cap 15 is below"),
    (None, ["--stages", "2", "--time-limit", "0"], "--time-limit must be > 0"),
]


@pytest.mark.parametrize("make,args,message", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_written(make, args, message, tmp_path):
    cat = tmp_path / "cat"
    graph = write_graph(tmp_path, make() if make else None)
    p = run_cli("--graph", str(graph), *args, "--catalog", str(cat), "--json", tmp_path=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    assert message in p.stderr and p.stdout == ""
    assert len([ln for ln in p.stderr.strip().splitlines() if ln.strip()]) == 1
    assert open_catalog(str(cat)).runs().num_rows == 0


@pytest.mark.slow
def test_partition_step_of_optimize_profiles_the_model_first(prefect_harness, tmp_path):
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.partition import partition_in_optimize
    from forgeflow.flows.runtime import recorded_run

    url = str(tmp_path / "cat")
    cat = open_catalog(url)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def wrapper():
        with recorded_run(cat, "optimize-test", {}) as run:
            return run.id, partition_in_optimize(cat.url, run.id, "forgeflow:digits_cnn", 2, None, time_limit=10)

    run_id, out = wrapper()
    assert out["k"] == 2 and out["ratio"] >= 1.0 and out["bottleneck"] > 0
    assert cat.read("graphs", filter=pc.field("run_id") == run_id).num_rows == 1
    assert cat.read("partition_results", filter=pc.field("run_id") == run_id).num_rows == 1


def test_cli_writes_plan_json_and_prints_one_json_line(tmp_path):
    cat = tmp_path / "cat"
    plan_path = tmp_path / "PLAN.json"
    p = run_cli("--graph", str(write_graph(tmp_path)), "--stages", "2", "--time-limit", "10", "--output",
                str(plan_path), "--catalog", str(cat), "--json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    plan = json.loads(plan_path.read_text())
    assert plan["k"] == 2 and len(plan["stages"]) == 2
    assert sorted(i for s in plan["stages"] for i in s) == ["1", "2", "3", "4", "5", "6"]
    assert plan["bottleneck"] == out["bottleneck"] and plan["ratio"] == pytest.approx(1.0)
    assert plan["lower_bound"] <= plan["bottleneck"] + 1e-9
    assert open_catalog(str(cat)).run(out["run_id"])["status"] == "completed"
