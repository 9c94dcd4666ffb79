"""Accelerator requests as Dask worker resources (no Prefect, no catalog).

A Dask worker advertises what it has when it starts (``dask worker ADDRESS --resources "GPU=1"``); a task that
needs an accelerator asks for it, and the scheduler only places it on a worker with that resource free. So a GPU
worker runs at most ``GPU`` such tasks at once, and CPU-only workers never get them.

How a step asks (pick the form matching where it submits):

- a Prefect task submitted to a ``DaskTaskRunner`` (prefect-dask honours Dask annotations)::

      with accelerator_annotation("cuda"):
          future = my_step.submit(...)

- fine-grained work inside a task (``tasks.dask_fanout.step_executor()``'s ``.client`` / any ``distributed.Client``)::

      client.submit(fn, *args, resources=dask_resources("cuda"))

``check_accelerators_available(client, "cuda")`` fails at once, with one clear message, when no worker of the
cluster has the resource (otherwise the task would wait forever for a worker that never comes).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Iterator

from forgeflow.tasks.errors import ForgeflowError

# device family -> the Dask resource name a worker advertises for it
RESOURCE_NAMES = {"cuda": "GPU", "gpu": "GPU", "mps": "MPS", "xpu": "XPU", "tpu": "TPU"}

_DEVICE = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<index>\d+))?(?:\*(?P<count>\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class DeviceRequest:
    """What one task needs: ``kind`` ('cpu', 'cuda', ...) and how many units of it (fractions share a device)."""

    kind: str
    count: float = 1.0

    @property
    def resource(self) -> str | None:
        """The Dask resource name, or None for CPU work (every worker can run it)."""
        return RESOURCE_NAMES.get(self.kind)

    def resources(self) -> dict[str, float]:
        """The ``resources=`` argument of ``Client.submit`` / ``dask.annotate`` ({} for CPU work)."""
        return {self.resource: self.count} if self.resource else {}


def parse_device(device: str | None) -> DeviceRequest:
    """``None``/'cpu' -> CPU; 'cuda', 'cuda:0', 'gpu', 'cuda*0.5' (half a GPU: two tasks share one) -> a request.

    A device index ('cuda:1') selects a device *inside* the worker; to the scheduler any GPU worker will do.
    """
    if device is None:
        return DeviceRequest("cpu", 0.0)
    text = str(device).strip().lower()
    m = _DEVICE.match(text)
    if not m:
        raise ForgeflowError(f"device {device!r} must look like cpu, cuda, cuda:0 or cuda*0.5")
    kind = m["kind"]
    if kind != "cpu" and kind not in RESOURCE_NAMES:
        raise ForgeflowError(f"unknown device kind {kind!r}; known: cpu, {', '.join(sorted(RESOURCE_NAMES))}")
    count = float(m["count"]) if m["count"] else 1.0
    if kind == "cpu":
        return DeviceRequest("cpu", 0.0)
    if not count > 0:
        raise ForgeflowError(f"device {device!r}: the share of a device must be > 0")
    return DeviceRequest("cuda" if kind == "gpu" else kind, count)


def dask_resources(device: str | DeviceRequest | None) -> dict[str, float]:
    """The Dask ``resources`` a task on ``device`` must hold ({} for CPU work)."""
    req = device if isinstance(device, DeviceRequest) else parse_device(device)
    return req.resources()


@contextlib.contextmanager
def accelerator_annotation(device: str | DeviceRequest | None) -> Iterator[dict[str, float]]:
    """``dask.annotate(resources=...)`` for ``device``; a no-op for CPU work. Yields the resources."""
    resources = dask_resources(device)
    if not resources:
        yield resources
        return
    import dask

    with dask.annotate(resources=resources):
        yield resources


def cluster_resources(client: Any) -> dict[str, dict[str, float]]:
    """Worker address -> resources it advertises (from the scheduler)."""
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    return {addr: dict(w.get("resources") or {}) for addr, w in info.get("workers", {}).items()}


def _takes_n_workers(client: Any) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def check_accelerators_available(client: Any, device: str | DeviceRequest | None) -> None:
    """Raise ForgeflowError unless some worker of ``client``'s cluster can hold ``device``'s resources."""
    needed = dask_resources(device)
    if not needed:
        return
    workers = cluster_resources(client)
    for res in workers.values():
        if all(res.get(name, 0) >= amount for name, amount in needed.items()):
            return
    have = sorted({name for res in workers.values() for name in res}) or ["none"]
    want = ", ".join(f"{k}={v:g}" for k, v in needed.items())
    raise ForgeflowError(f"no Dask worker offers {want} (worker resources: {', '.join(have)}); start one with "
                         f"`dask worker ADDRESS --resources \"{next(iter(needed))}=1\"`")
