"""A flow against a real `dask scheduler` + two `dask worker` processes on 127.0.0.1, undisturbed and with one
worker SIGKILLed mid-flow: the disturbed run completes with the same results and no duplicate rows."""

from __future__ import annotations

import threading
import time

import pyarrow.compute as pc
import pytest

from forgeflow.catalog import open_catalog
from forgeflow.catalog.verify import verify_catalog
from tests.conftest import free_port
from tests.ops._procs import Proc, bin_path, wait_until

pytestmark = pytest.mark.slow

MODELS = ["torchvision:resnet18", "torchvision:mobilenet_v3_small"]
REPEATS = 25


@pytest.fixture
def cluster(tmp_path):
    """(address, {name: worker Proc}) of a scheduler and two single-threaded workers without nannies (a killed
    worker stays dead, as when its machine is lost)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [Proc([bin_path("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                  tmp_path / "scheduler.log")]
    workers = {}
    try:
        for name in ("w1", "w2"):
            workers[name] = Proc([bin_path("dask"), "worker", address, "--name", name, "--nthreads", "1",
                                  "--no-nanny", "--no-dashboard", "--memory-limit", "4GiB"],
                                 tmp_path / f"{name}.log")
            procs.append(workers[name])
        from distributed import Client

        def ready():
            try:
                with Client(address, timeout=5) as c:
                    return len(c.scheduler_info()["workers"]) == 2
            except OSError:
                return False

        wait_until(ready, 120, "scheduler and two workers", interval=1, procs=procs)
        with Client(address, timeout=10) as c:  # import torch once per worker, so both runs start warm
            c.run(lambda: __import__("torchvision.models") and None)
        yield address, workers
    finally:
        for p in reversed(procs):
            p.stop()


def _profile(address: str, cat: str) -> dict:
    """The profile_models flow (this process, real Prefect) on the cluster at ``address``."""
    from prefect_dask import DaskTaskRunner

    from forgeflow.flows.profile_models import profile_models

    flow = profile_models.with_options(task_runner=DaskTaskRunner(address=address))
    # enough timed repeats that a step spends seconds measuring before its short write phase, where the kill lands
    # (a worker lost *during* a step's final appends can leave both attempts' rows: the catalog commits each file
    # on its own)
    return flow(models=MODELS, catalog=cat, repeats=REPEATS, warmup=1)


def _graph_count(cat_url: str) -> int:
    try:
        return open_catalog(cat_url).read("graphs", columns=["graph_id"]).num_rows
    except Exception:  # no catalog folder yet
        return 0


def _structure(cat_url: str, run_id: str) -> dict:
    cat = open_catalog(cat_url)
    graphs = cat.read("graphs", filter=pc.field("run_id") == run_id).to_pylist()
    nodes = cat.read("graph_nodes", filter=pc.field("run_id") == run_id, columns=["graph_id"]).num_rows
    edges = cat.read("graph_edges", filter=pc.field("run_id") == run_id, columns=["graph_id"]).num_rows
    per_model = {g["model"]: (g["structure_id"], g["flops"], g["params"], g["nodes"], g["edges"]) for g in graphs}
    assert len(graphs) == len(per_model) == len(MODELS), "a graph row was written twice"
    assert nodes == sum(g["nodes"] for g in graphs) and edges == sum(g["edges"] for g in graphs), \
        "node or edge rows were written twice"
    return per_model


def test_sigkill_a_worker_mid_flow(cluster, prefect_harness, tmp_path):
    address, workers = cluster
    from distributed import Client

    # undisturbed reference
    ref_cat = str(tmp_path / "ref")
    ref = _profile(address, ref_cat)
    expected = _structure(ref_cat, ref["run_id"])

    # the same flow; SIGKILL the worker of a step while it is measuring (its progress events say where it is)
    cat = str(tmp_path / "cat")
    killed: dict = {}

    def killer():
        from forgeflow.tasks.profiling.steps import PROGRESS_TOPIC

        try:
            started = time.time()
            with Client(address, timeout=10) as client:
                def measuring_worker():
                    """The worker of a step in its timing stage, under half done (seconds from its writes)."""
                    for ts, msg in client.get_events(PROGRESS_TOPIC):
                        if ts >= started and isinstance(msg, dict) and msg.get("stage") == "timing" \
                                and msg["done"] < msg["total"] / 2 and msg.get("worker"):
                            return msg["worker"]
                    return None

                address_ = wait_until(measuring_worker, 240, "a profile step to be measuring", interval=0.1)
                name = client.scheduler_info()["workers"][address_]["name"]
                workers[name].kill()  # SIGKILL: no goodbye to the scheduler
                killed["name"] = name
                killed["graphs_at_kill"] = _graph_count(cat)  # steps write their graph only when done
        except BaseException as exc:  # reported by the main thread
            killed["error"] = exc

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = _profile(address, cat)
    thread.join(timeout=60)
    assert "error" not in killed, killed.get("error")
    assert killed.get("name") and not workers[killed["name"]].alive()
    assert killed["graphs_at_kill"] == 0, "a step had already finished when the worker was killed"
    assert _structure(cat, result["run_id"]) == expected
    assert open_catalog(cat).run(result["run_id"])["status"] == "completed"
    report = verify_catalog(open_catalog(cat))
    assert not report.damaged, report.to_dict()
