"""Per-worker thread pinning and the per-process measurement lock."""

import os
import threading
import time

import pytest
import torch

from forgeflow.tasks.profiling.workers import exclusive_measurement, pin_worker, release_affinity


def test_pin_worker_sets_threads_and_binds_cpus():
    before = torch.get_num_threads()
    try:
        done = pin_worker(1, slot=0)
        assert torch.get_num_threads() == 1 and done["torch_threads"] == 1
        if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 1 and done["cpu_affinity"]:
            assert sorted(os.sched_getaffinity(0)) == done["cpu_affinity"] and len(done["cpu_affinity"]) == 1
        # more workers than CPUs: leave placement to the OS rather than stacking workers on one core
        assert pin_worker(1, slot=10_000)["cpu_affinity"] is None
        assert pin_worker(2, slot=None)["cpu_affinity"] is None and torch.get_num_threads() == 2
    finally:
        release_affinity()
        torch.set_num_threads(before)


def test_exclusive_measurement_serialises_threads():
    spans = []

    def measure():
        with exclusive_measurement():
            t0 = time.perf_counter()
            time.sleep(0.05)
            spans.append((t0, time.perf_counter()))

    threads = [threading.Thread(target=measure) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("bad", [0, -1])
def test_pin_worker_clamps_threads(bad):
    before = torch.get_num_threads()
    try:
        assert pin_worker(bad)["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
