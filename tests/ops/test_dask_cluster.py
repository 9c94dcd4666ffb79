"""A flow against a real `dask scheduler` + two `dask worker` processes on 127.0.0.1, undisturbed and with one
worker SIGKILLed mid-flow: the disturbed run completes with the same results and no duplicate rows."""

from __future__ import annotations

import threading
import time

import pyarrow.compute as pc
import pytest

from catalog import open_catalog
from catalog.verify import verify_catalog
from tests.conftest import free_port
from tests.ops._procs import Proc, bin_path, wait_until

pytestmark = pytest.mark.slow

MODELS = ["torchvision:resnet18", "torchvision:mobilenet_v3_small"]


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

    from flows.profile_models import profile_models

    flow = profile_models.with_options(task_runner=DaskTaskRunner(address=address))
    return flow(models=MODELS, catalog=cat, repeats=5, warmup=1)


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

    # the same flow; SIGKILL the worker running a profile step once it has been at it for a second
    cat = str(tmp_path / "cat")
    killed: dict = {}

    def killer():
        try:
            with Client(address, timeout=10) as client:
                def busy_worker():
                    names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
                    return next((names.get(a) for a, keys in client.processing().items() if keys), None)

                name = wait_until(busy_worker, 240, "a worker to start a profile step", interval=0.2)
                time.sleep(1.0)
                workers[name].kill()  # SIGKILL: no goodbye to the scheduler
                killed["name"] = name
                # mid-flow: a step writes its graph only when done, and not every graph is there yet
                killed["graphs_at_kill"] = _graph_count(cat)
        except BaseException as exc:  # reported by the main thread
            killed["error"] = exc

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = _profile(address, cat)
    thread.join(timeout=60)
    assert "error" not in killed, killed.get("error")
    assert killed.get("name") and not workers[killed["name"]].alive()
    assert killed["graphs_at_kill"] < len(MODELS), "the kill came after every step had finished"
    assert _structure(cat, result["run_id"]) == expected
    assert open_catalog(cat).run(result["run_id"])["status"] == "completed"
    report = verify_catalog(open_catalog(cat))
    assert not report.damaged, report.to_dict()
