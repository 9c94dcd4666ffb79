"""The worker preload every forgeflow LocalCluster gets: a closing worker spares its exit the full GC scan."""

from __future__ import annotations

import gc

import dask

from forgeflow.flows.runtime import task_runner_for
from forgeflow.flows.settings import Settings
from forgeflow.tasks import dask_worker


def test_a_closing_worker_freezes_what_it_holds():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        dask_worker.dask_setup(None)
        assert gc.get_freeze_count() == 0  # nothing happens at start
        dask_worker.dask_teardown(None)
        assert gc.get_freeze_count() > 1000  # every live object moved out of the exit's scan
    finally:
        gc.unfreeze()


def test_the_local_cluster_preloads_it_after_the_users_own(monkeypatch, tmp_path):
    from forgeflow.flows import api

    monkeypatch.setattr(api, "ensure_api", lambda: "http://127.0.0.1:9/api")  # this test starts no API
    monkeypatch.setenv("FORGEFLOW_STATE_DIR", str(tmp_path))  # no `forgeflow up` state: a LocalCluster is planned
    with dask.config.set({"distributed.worker.preload": ["my_site.preload"]}):
        runner = task_runner_for(Settings(dask_address=None), heavy=True)
    assert runner.cluster_kwargs["preload"] == ["my_site.preload", dask_worker.PRELOAD]
    assert dask_worker.PRELOAD == "forgeflow.tasks.dask_worker"


def test_a_starting_worker_imports_its_modules_in_the_background(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    monkeypatch.setenv(dask_worker.IMPORTS_ENV, "colorsys, no_such_module_xyz,")
    t = dask_worker.dask_setup(None)
    assert t is not None and t.daemon  # the worker does not wait for it
    t.join(30)
    assert "colorsys" in sys.modules  # imported; the missing module is left for the step to raise
    monkeypatch.delenv(dask_worker.IMPORTS_ENV)
    assert dask_worker.dask_setup(None) is None


def test_the_local_cluster_workers_import_torch_and_prefect(monkeypatch, tmp_path):
    from forgeflow.flows.runtime import local_cluster_kwargs

    kw = local_cluster_kwargs(Settings(dask_address=None), "http://127.0.0.1:9/api", ("forgeflow.tasks.deploy.steps",))
    assert kw["env"][dask_worker.IMPORTS_ENV] == "prefect,torch,forgeflow.tasks.deploy.steps"
    assert kw["env"]["PREFECT_API_URL"] == "http://127.0.0.1:9/api"
