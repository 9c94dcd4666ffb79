"""The executor contract: how fine-grained work fans out from inside a coarse step, on Dask or serially.

An *executor* is anything with ``submit(fn, *args, **kwargs)`` returning a future (``result()``, ``done()``,
``cancel()``): a ``concurrent.futures.Executor``, a ``distributed.Client``, or ``SERIAL``, the ``SerialExecutor``
that runs each call at once in the calling thread (dask's ``SynchronousExecutor``). Every function that fans out
takes ``executor=SERIAL`` and calls ``executor.submit`` unconditionally; nothing branches on ``None``. Algorithms
that change their plan with parallelism (more restarts, a bound computed meanwhile) ask ``runs_in_parallel``.

Every Prefect step gets its executor from ``step_executor()``: on a Dask worker, a ``ClientExecutor`` over
``distributed.worker_client``, which secedes the calling task from its worker thread while the fanned-out work runs
and rejoins at the end, so the fan-out cannot deadlock even on a one-worker, one-thread cluster (prefect_dask's
``get_dask_client`` keeps the thread and waits forever for its own worker there); off Dask, ``SERIAL``.
Imports no Prefect.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator


class SerialExecutor:
    """Runs every submitted call at once in the calling thread and returns a finished ``Future`` holding its
    result or its exception (raised again by ``result()``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - the caller sees it from result(), as with any executor
            future.set_exception(exc)
        return future

    def __repr__(self) -> str:
        return "SERIAL"


SERIAL = SerialExecutor()


class ClientExecutor:
    """A ``distributed.Client`` as an executor: every call is its own task (``pure=False``: equal arguments are
    not merged into one key, and arguments are not hashed)."""

    def __init__(self, client) -> None:
        self.client = client

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any):
        return self.client.submit(fn, *args, pure=False, **kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list:
        return self.client.map(fn, *iterables, pure=False)


def as_executor(executor: Any):
    """``executor`` as an object of the contract: a ``distributed.Client`` is wrapped in a ``ClientExecutor``;
    anything else with ``submit`` is returned as is."""
    try:
        from distributed import Client

        if isinstance(executor, Client):
            return ClientExecutor(executor)
    except ImportError:  # pragma: no cover - distributed is a dependency
        pass
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"an executor needs a submit(fn, *args) method; got {executor!r} (use tasks.dask_fanout.SERIAL"
                        " to run serially)")
    return executor


def runs_in_parallel(executor: Any) -> bool:
    """Whether submitted calls may run concurrently with the caller (every executor except ``SERIAL``)."""
    return not isinstance(executor, SerialExecutor)


def fan_out(executor: Any, fn: Callable[..., Any], calls: Iterable[tuple]) -> list:
    """``[fn(*args) for args in calls]``, each call submitted to ``executor`` before any result is awaited; results
    in order, the first failure raised."""
    futures = [executor.submit(fn, *args) for args in calls]
    return [f.result() for f in futures]


def enter_worker_client(stack: contextlib.ExitStack):
    """A client of the Dask cluster the current task runs on (entered on ``stack``), or None off Dask."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return None
    return stack.enter_context(worker_client())


@contextlib.contextmanager
def step_executor() -> Iterator[Any]:
    """The executor a step fans out on: the Dask cluster it runs on (seceded; see the module docstring), else
    ``SERIAL``."""
    with contextlib.ExitStack() as stack:
        client = enter_worker_client(stack)
        yield SERIAL if client is None else ClientExecutor(client)
