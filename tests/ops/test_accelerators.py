"""Accelerator requests become Dask worker resources: tasks asking for a GPU only run on workers offering one."""

from __future__ import annotations

import pytest

from forgeflow.tasks.accelerators import (DeviceRequest, accelerator_annotation, check_accelerators_available, dask_resources,
                                parse_device)
from forgeflow.tasks.errors import ForgeflowError


@pytest.mark.parametrize("text,expected", [
    (None, {}), ("cpu", {}), ("cuda", {"GPU": 1.0}), ("cuda:1", {"GPU": 1.0}), ("gpu", {"GPU": 1.0}),
    ("cuda*0.5", {"GPU": 0.5}), ("mps", {"MPS": 1.0}),
])
def test_device_to_resources(text, expected):
    assert dask_resources(text) == expected


@pytest.mark.parametrize("text", ["tpu-v4", "cuda:x", "quantum", "cuda*0", ""])
def test_bad_device_is_a_clear_error(text):
    with pytest.raises(ForgeflowError, match="device"):
        parse_device(text)


def _where(_):
    from distributed import get_worker

    return get_worker().name


def test_gpu_tasks_run_only_on_the_gpu_worker():
    """Two workers, one advertising GPU=1: every GPU-annotated task lands there; CPU work may go anywhere."""
    import dask
    from distributed import Client, Scheduler, SpecCluster, Worker

    workers = {"cpu": {"cls": Worker, "options": {"nthreads": 2}},
               "gpu": {"cls": Worker, "options": {"nthreads": 2, "resources": {"GPU": 1}}}}
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}}) \
            as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=30)
        check_accelerators_available(client, "cuda")
        with accelerator_annotation("cuda") as res:
            assert res == {"GPU": 1.0}
            futures = [client.submit(_where, i, pure=False) for i in range(8)]
        assert set(client.gather(futures)) == {"gpu"}
        futures = client.map(_where, range(8), resources=dask_resources("cuda*0.5"), pure=False)
        assert set(client.gather(futures)) == {"gpu"}
        # unannotated work spreads over both workers
        cpu_futures = client.map(_slow_where, range(16), pure=False)
        assert set(client.gather(cpu_futures)) == {"cpu", "gpu"}
        with accelerator_annotation("cpu"):
            assert dask.get_annotations() == {}


def _slow_where(_):
    import time

    time.sleep(0.05)
    return _where(_)


def test_missing_accelerator_fails_fast():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        check_accelerators_available(client, "cpu")  # CPU work needs nothing
        with pytest.raises(ForgeflowError, match="no Dask worker offers GPU=1"):
            check_accelerators_available(client, DeviceRequest("cuda", 1.0))
