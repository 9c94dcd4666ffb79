"""The runner with real executors: failing clients, Dask, checkpoints in a catalog, resume after SIGKILL."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from forgeflow.tasks.federated.checkpoints import CatalogCheckpoints
from forgeflow.tasks.federated.client import train_client
from forgeflow.tasks.federated.config import Compression, FederatedConfig
from forgeflow.tasks.federated.data import build_dataset
from forgeflow.tasks.federated.runner import MemoryCheckpoints, run_federated

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


def small_config(**kw):
    base = dict(model="forgeflow:digits_mlp", clients=6, alpha=0.5, rounds=5, fraction=0.5, local_epochs=1,
                batch_size=32, lr=0.3, compression=Compression.parse("topk:0.05"), seed=3)
    base.update(kw)
    return FederatedConfig(**base)


def small_dataset(cfg):
    return build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)


def client_two_raises(round_, client_id, *args):
    if client_id == 2:
        raise RuntimeError("disk full on client 2")
    return train_client(round_, client_id, *args)


def test_a_client_that_raises_does_not_stop_the_round():
    cfg = small_config(fraction=1.0, rounds=2, quorum=0.5)
    with ThreadPoolExecutor(2) as pool:
        res = run_federated(cfg, small_dataset(cfg), executor=pool, client_fn=client_two_raises)
    for rec in res.records:
        assert rec.status == "ok" and rec.dropped == (2,) and len(rec.participants) == 5
        assert rec.failures == ((2, "RuntimeError: disk full on client 2"),)
    assert res.records[-1].accuracy > res.records[0].accuracy - 0.05


def test_dask_local_cluster_matches_serial_run():
    from distributed import Client, LocalCluster

    cfg = small_config(rounds=2)
    serial = run_federated(cfg, small_dataset(cfg))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        dask = run_federated(cfg, small_dataset(cfg), executor=client)
    np.testing.assert_array_equal(dask.weights, serial.weights)
    assert [r.cum_uplink_bytes for r in dask.records] == [r.cum_uplink_bytes for r in serial.records]


def test_straggler_misses_deadline_and_is_dropped():
    import threading

    release = threading.Event()

    def slow_client_zero(round_, client_id, *args):
        if client_id == 0:  # the straggler answers only after the run has ended, however fast the others are
            release.wait(timeout=60)
        return train_client(round_, client_id, *args)

    # a deadline the five others meet even on a loaded machine (2 cores shared with the suite's other worker)
    cfg = small_config(fraction=1.0, rounds=1, deadline_s=5.0)
    with ThreadPoolExecutor(6) as pool:
        try:
            res = run_federated(cfg, small_dataset(cfg), executor=pool, client_fn=slow_client_zero)
        finally:
            release.set()
    assert res.records[0].dropped == (0,) and res.records[0].failures == ((0, "deadline"),)


def test_resume_after_killed_flow_reaches_the_same_weights(tmp_path):
    from forgeflow.catalog import open_catalog

    cfg = small_config()
    url = str(tmp_path / "catalog")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-m", "tests.federated._resume_job", url], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if line.strip() == "round 2":
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    cat = open_catalog(url)
    resumed = run_federated(cfg, small_dataset(cfg), store=CatalogCheckpoints(cat, run_id="resumed-run"))
    assert resumed.resumed_from_round == 2
    assert [r.round for r in resumed.records] == [1, 2, 3, 4, 5]
    fresh = run_federated(cfg, small_dataset(cfg), store=MemoryCheckpoints())
    np.testing.assert_array_equal(resumed.weights, fresh.weights)
    assert resumed.final.cum_uplink_bytes == fresh.final.cum_uplink_bytes
    rounds = cat.read("federated_rounds").to_pylist()
    assert sorted({r["round"] for r in rounds}) == [1, 2, 3, 4, 5]
    assert {r["run_id"] for r in rounds} == {"killed-run", "resumed-run"}
