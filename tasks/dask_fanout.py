"""Fan fine-grained work out from inside a coarse Prefect task running on a Dask worker.

``distributed.worker_client`` secedes the calling task from its worker thread while the fanned-out work runs and
rejoins at the end, so the fan-out cannot deadlock even on a one-worker, one-thread cluster (prefect_dask's
``get_dask_client`` keeps the thread and waits forever for its own worker there). Imports no Prefect.
"""

from __future__ import annotations

import contextlib


def enter_worker_client(stack: contextlib.ExitStack):
    """A client of the Dask cluster the current task runs on (entered on ``stack``), or None off Dask (serial)."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return None
    return stack.enter_context(worker_client())
