"""Bounded shutdown on Ctrl-C / SIGTERM: a command leaves no server, scheduler or worker process behind.

On the first SIGINT or SIGTERM the command unwinds as usual (the run's ``failed`` row is written, the LocalCluster
and the temporary Prefect server are stopped), and a watchdog starts: if the command has not exited after
``GRACE_S`` seconds it terminates every process it started (the whole descendant tree: Dask nannies and workers, the
Prefect server) and exits at once. A second signal skips the wait. At any exit the command reaps what is left.

Prefect's flow engine installs its own SIGTERM handler while a flow runs (it raises ``TerminationSignal``); ours is
chained in front of it, so the watchdog is armed whichever handler is in place.
"""

from __future__ import annotations

import os
import signal
import threading
import time

GRACE_S = 8.0  # the default of Settings.shutdown_grace_s (FORGEFLOW_SHUTDOWN_GRACE_S)
_signals: list[int] = []


def _session(p) -> int | None:
    try:
        return os.getsid(p.pid)
    except OSError:
        return None


def _resource_tracker(p) -> bool:
    """Whether ``p`` is multiprocessing's resource tracker (started with a LocalCluster's worker processes). It
    ignores SIGTERM, so waiting for it cost every cluster command the whole ``timeout`` before a SIGKILL; it needs
    neither: it exits on its own, after unlinking any leaked semaphore, when this process exits and closes its pipe."""
    try:
        return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
    except Exception:  # noqa: BLE001 - gone or unreadable: treat as an ordinary descendant
        return False


def kill_descendants(timeout: float = 3.0) -> int:
    """Terminate every process below this one in its session (Dask nannies and workers; not the detached
    `forgeflow up` processes, which live in sessions of their own), SIGKILL what is left after ``timeout``; returns
    how many there were."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with distributed
        return 0
    try:
        sid = os.getsid(0)
        procs = [p for p in psutil.Process().children(recursive=True)
                 if _session(p) == sid and not _resource_tracker(p)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=1.0)
    return len(procs)


def _hard_exit(signum: int) -> None:
    try:
        from forgeflow.flows import api

        if api._started is not None:  # this command's temporary API server (its own session)
            os.killpg(api._started.proc.pid, signal.SIGKILL)
        kill_descendants(timeout=2.0)
    finally:
        os._exit(128 + signum)


def grace_s() -> float:
    """Seconds from the first signal to killing what is left: ``Settings.shutdown_grace_s``, read when a signal
    comes (a bad value falls back to the default; the command reports it in one line anyway)."""
    from forgeflow.flows.settings import load_settings
    from forgeflow.tasks.errors import ForgeflowError

    try:
        return load_settings().shutdown_grace_s
    except ForgeflowError:
        return GRACE_S


def _watchdog(signum: int) -> None:
    time.sleep(grace_s())
    _hard_exit(signum)


def _arm(signum: int) -> None:
    _signals.append(signum)
    if len(_signals) == 1:
        threading.Thread(target=_watchdog, args=(signum,), name="forgeflow-shutdown", daemon=True).start()
    else:
        _hard_exit(signum)


def _on_signal(signum, frame):
    _arm(signum)
    raise KeyboardInterrupt


def received() -> int | None:
    """The first signal received, if any."""
    return _signals[0] if _signals else None


def install() -> None:
    """Handle SIGINT/SIGTERM in this (main) thread as described in the module docstring (``chain_prefect`` is
    called once Prefect is imported, by ``flows.api.ensure_api``)."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def chain_prefect() -> None:
    """Arm the watchdog from Prefect's SIGTERM handler too (installed by its flow engine during a flow run)."""
    try:
        from prefect.utilities import engine
    except ImportError:  # pragma: no cover
        return
    original = getattr(engine, "_prefect_sigterm_handler", None)
    if original is None or getattr(original, "_forgeflow", False):
        return

    def handler(sig_num, *args):
        _arm(sig_num)
        return original(sig_num, *args)

    handler._forgeflow = True
    engine._prefect_sigterm_handler = handler
