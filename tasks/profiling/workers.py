"""Keep concurrent measurements from fighting: pin a profiling worker's torch threads (and CPUs) to its own share.

The ``profile_models`` flow runs one model per Dask worker. Each worker calls ``pin_worker(threads)``: torch gets
``threads`` intra-op threads and one inter-op thread, and, where the OS allows it and there are enough CPUs, the
worker process is bound to its own block of ``threads`` CPUs (``slot`` = the worker's index in the cluster), so two
models timed at once do not share cores. What was done is returned and recorded with the measurement.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

import torch


def worker_slot() -> int | None:
    """This Dask worker's index (LocalCluster names workers 0, 1, ...), or None outside a worker."""
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return None
    name = w.name
    if isinstance(name, int):
        return name
    try:
        return int(str(name).rsplit("-", 1)[-1])
    except ValueError:
        return abs(hash(str(name))) % 1024


_INITIAL: list[int] | None = None
_MEASURING = threading.Lock()


@contextlib.contextmanager
def exclusive_measurement() -> Iterator[None]:
    """Hold this process's measurement lock: a Dask worker with several threads still profiles one model at a time,
    so two timings never share the worker's cores."""
    with _MEASURING:
        yield


def _initial_cpus() -> list[int]:
    """The CPUs this process could use before any pinning (remembered, since pinning narrows the answer)."""
    global _INITIAL
    if _INITIAL is None:
        try:
            _INITIAL = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            _INITIAL = []
    return _INITIAL


def pin_worker(threads: int, slot: int | None = None) -> dict[str, Any]:
    """Set torch to ``threads`` threads; bind the process to CPUs [slot*threads, (slot+1)*threads) when they exist."""
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work in this process
        pass
    done: dict[str, Any] = {"torch_threads": threads, "slot": slot, "cpu_affinity": None}
    if slot is None or not hasattr(os, "sched_setaffinity"):
        return done
    allowed = _initial_cpus()
    if not allowed:
        return done
    if len(allowed) < threads * (slot + 1):
        # fewer CPUs than workers x threads: binding would stack workers on the same cores; leave it to the OS
        return done
    cpus = allowed[slot * threads:(slot + 1) * threads]
    try:
        os.sched_setaffinity(0, cpus)
        done["cpu_affinity"] = cpus
    except OSError:
        pass
    return done


def release_affinity() -> None:
    """Give the process all CPUs back (used after a pinned measurement in a shared process)."""
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, _initial_cpus() or range(os.cpu_count() or 1))
        except OSError:
            pass
