"""`forgeflow plan`: the flow under real Prefect, the step on a Dask LocalCluster (the budget front fanned out), and
every bad input from the command line (one line on stderr, exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from tests._cli import run_cli as forgeflow_cli
from forgeflow.tasks.plan import PlanInstance
from forgeflow.tasks.plan.validate import validate_joint

ROOT = Path(__file__).resolve().parents[2]

INSTANCE = {"maxFPGAs": 2, "maxSizePerFPGA": 6.0, "maxCPUs": 3, "sensitivityBudget": 1.2,
            "nodes": [{"id": i, "fpgaLatency": 4.0, "size": 4.0,
                       "bitOptions": [{"bits": 8, "latency": 2.0, "size": 1.0, "sensitivity": 0.6}]}
                      for i in range(4)],
            "edges": [{"sourceId": i, "destId": i + 1, "cost": 0.5} for i in range(3)]}


def write(tmp_path: Path, data=None, name="inst.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(INSTANCE if data is None else data))
    return p


def check_plan(out: dict) -> None:
    inst = PlanInstance.from_json_dict(INSTANCE, name="x")
    stage_of = {nid: s for s, ids in enumerate(out["stages"]) for nid in ids}
    a = np.array([stage_of[i] for i in inst.raw_ids])
    ch = np.array([inst.option_of_bits(n, out["bits"][str(i)]) or 0 for n, i in enumerate(inst.raw_ids)])
    loads = validate_joint(inst, a, ch)
    assert loads.bottleneck == pytest.approx(out["bottleneck"]) == pytest.approx(6.5)


@pytest.mark.slow
def test_plan_flow_writes_plan_choices_baselines_front_and_plot(prefect_harness, tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner

    from forgeflow.flows.plan import plan_deployment

    url = str(tmp_path / "cat")
    flow = plan_deployment.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    out = flow(graph_file=str(write(tmp_path)), time_limit=10, front=2, front_time_limit=5, catalog=url)
    cat = open_catalog(url)
    assert cat.run(out["run_id"])["status"] == "completed"
    check_plan(out)
    assert out["ratio"] == pytest.approx(1.0, abs=1e-5) and out["stages"][0][0] == 0  # ids keep their JSON type
    assert out["baselines"]["uniform_float"] is None and out["baselines"]["uniform_8bit"] is None
    flt = pc.field("run_id") == out["run_id"]
    assert cat.read("plan_choices", filter=pc.field("result_id") == out["result_id"]).num_rows == 4
    assert cat.read("plan_results", filter=flt).num_rows == 3  # the plan + two front points
    front = cat.read("plan_fronts", filter=flt).to_pylist()
    assert len(front) == 2 and all(r["lower_bound_ms"] <= r["bottleneck_ms"] + 1e-9 for r in front)
    assert front[0]["bottleneck_ms"] >= front[1]["bottleneck_ms"] - 1e-9  # more budget never hurts
    assert cat.get_object(out["plot"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_step_fans_the_front_out_on_a_dask_cluster(tmp_path):
    from distributed import Client, LocalCluster

    from forgeflow.tasks.plan.store import plan_catalog_instance, put_instance

    cat = open_catalog(str(tmp_path / "cat"))
    key = put_instance(cat, "r0", PlanInstance.from_json_dict(INSTANCE, name="x"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        out = plan_catalog_instance(cat, "r1", key, "x", time_limit=10, front=3, front_time_limit=5,
                                    executor=client)
    check_plan(out)
    assert len(out["front"]) == 3 and cat.read("plan_fronts").num_rows == 3
    # budgets 0.8, 1.6, 2.4: one quantized node fits no 6-byte split; two give 6.5; four give 4.5
    assert [p["status"] for p in out["front"]] == ["infeasible", "optimal", "optimal"]
    assert out["front"][0]["bottleneck_ms"] is None and "fits" in out["front"][0]["message"]
    assert [p["bottleneck_ms"] for p in out["front"][1:]] == pytest.approx([6.5, 4.5])


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`forgeflow plan ARGS` in this process (tests/_cli.py)."""
    return forgeflow_cli("plan", *args, env={"FORGEFLOW_DASK_WORKERS": "1"})


def _mut(fn):
    def make():
        d = json.loads(json.dumps(INSTANCE))
        fn(d)
        return d
    return make


BAD = [
    (_mut(lambda d: d["nodes"][1]["bitOptions"][0].pop("size")), [], "bit option missing field 'size'"),
    (None, ["--budget", "0"], "above the devices' total memory"),  # float only: 16 bytes > 2 x 6
    (None, ["--budget", "-1"], "--budget must be >= 0"),
    (None, ["--time-limit", "0"], "--time-limit must be > 0"),
    (_mut(lambda d: d.pop("maxFPGAs")), [], "maxFPGAs"),
    (_mut(lambda d: d["edges"].append({"sourceId": 3, "destId": 0, "cost": 1})), [], "cycle"),
    (None, ["--target", "nonexistent_target.yaml"], "target file not found"),
]


@pytest.mark.parametrize("make, extra, words", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, make, extra, words):
    graph = write(tmp_path, make() if make else None)
    cat = tmp_path / "cat"
    out = tmp_path / "PLAN.json"
    proc = run_cli("--graph", str(graph), "--output", str(out), "--catalog", str(cat), *extra, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not cat.exists() and not out.exists()


def test_bad_target_file_and_missing_sources(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("name: x\ndevices: {count: 2, memory_bytes: -5}\nlinks: {bandwidth_bytes_per_s: 1e9}\n"
                   "budget: {fraction_of_uniform4: 0.5}\n")
    proc = run_cli("--model", "forgeflow:digits_cnn", "--target", str(bad), "--catalog", str(tmp_path / "c"),
                   tmp_path=tmp_path)
    assert proc.returncode == 2 and "field 'devices.memory_bytes'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("--model", "forgeflow:digits_cnn", "--catalog", str(tmp_path / "c"), tmp_path=tmp_path)
    assert proc.returncode == 2 and "--model needs --target" in proc.stderr
    proc = run_cli("--catalog", str(tmp_path / "c"), tmp_path=tmp_path)
    assert proc.returncode == 2 and "exactly one of" in proc.stderr
    assert not (tmp_path / "c").exists()
