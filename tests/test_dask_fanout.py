"""The executor contract: SERIAL behaves like any executor, a Client is wrapped, steps get one executor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from forgeflow.tasks.dask_fanout import SERIAL, ClientExecutor, as_executor, fan_out, runs_in_parallel, step_executor


def boom(x):
    raise ValueError(f"bad {x}")


def test_serial_runs_now_and_keeps_the_exception_for_result():
    calls = []
    f = SERIAL.submit(calls.append, 1)
    assert calls == [1] and f.done() and f.result() is None and not f.cancel()
    g = SERIAL.submit(boom, 7)
    assert g.done()
    with pytest.raises(ValueError, match="bad 7"):
        g.result()


def test_fan_out_is_the_same_on_every_executor():
    with ThreadPoolExecutor(2) as pool:
        assert fan_out(pool, pow, [(2, i) for i in range(6)]) == fan_out(SERIAL, pow, [(2, i) for i in range(6)])
        assert runs_in_parallel(pool) and not runs_in_parallel(SERIAL)
    with pytest.raises(ValueError, match="bad 3"):
        fan_out(SERIAL, boom, [(3,)])
    with pytest.raises(TypeError, match="submit"):
        as_executor(None)


def test_step_executor_off_dask_is_serial_and_a_client_is_wrapped():
    from distributed import Client, LocalCluster

    with step_executor() as ex:
        assert ex is SERIAL
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        ex = as_executor(client)
        assert isinstance(ex, ClientExecutor) and runs_in_parallel(ex)
        # pure=False: equal calls are separate tasks (a pure submit would merge them into one key)
        a, b = ex.submit(pow, 2, 3), ex.submit(pow, 2, 3)
        assert a.key != b.key and a.result() == b.result() == 8

        def inside(n):  # a "step" on a one-thread worker fans out without deadlocking
            with step_executor() as inner:
                assert isinstance(inner, ClientExecutor)
                return fan_out(inner, pow, [(2, i) for i in range(n)])

        assert client.submit(inside, 5).result(timeout=60) == [1, 2, 4, 8, 16]
