"""One Prefect API per command, and the warm path that outlives commands (`forgeflow up` / `forgeflow down`).

Which API a command's flow and every Dask worker it starts report to, first match wins:

1. ``PREFECT_API_URL`` from the environment (a server you run);
2. the server of a live `forgeflow up` (its state file, ``up.json`` in ``FORGEFLOW_STATE_DIR``, default
   ``~/.forgeflow``, names the API and the Dask scheduler; it is used when its ``/health`` answers);
3. one temporary server started by this command (Prefect's own ephemeral app on 127.0.0.1, a free port), stopped
   when the command ends. It is started as early as possible, so it comes up while the command validates its input.

The chosen URL is put in ``os.environ["PREFECT_API_URL"]`` before any LocalCluster starts, so Dask worker processes
inherit it and never start temporary servers of their own (the three-servers-per-command tax), and in Prefect's
settings of this process. The temporary server runs in its own session (Ctrl-C in a terminal reaches the command,
which stops it in order) and with a parent-death signal, so it dies with its command even if that is killed -9.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from forgeflow.tasks.errors import ForgeflowError

STATE_FILE = "up.json"


def state_dir() -> Path:
    """Where `forgeflow up` keeps its state (``Settings.state_dir``, FORGEFLOW_STATE_DIR)."""
    from forgeflow.flows.settings import load_settings

    return Path(load_settings().state_dir)


def state_path() -> Path:
    return state_dir() / STATE_FILE


def read_state() -> dict | None:
    """The state `forgeflow up` wrote, or None when there is none (or it is unreadable)."""
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def warm_state() -> dict | None:
    """The live `forgeflow up` state (its server process runs and its API answers), or None."""
    state = read_state()
    if state and state.get("api_url") and _alive((state.get("pids") or {}).get("prefect")) \
            and healthy(state["api_url"], timeout=5.0):
        return state
    return None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the command's own cleanup still stops it
        pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int) -> list[str]:
    """Prefect's API app under uvicorn on 127.0.0.1:``port`` (what ``prefect server start`` serves, without UI)."""
    import importlib.util

    app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]


def server_env(ephemeral: bool = True) -> dict[str, str]:
    """The server's environment; ``ephemeral``: Prefect's ephemeral mode (no background services, as Prefect's own
    temporary server runs)."""
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if ephemeral:
        env.update({"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
    env.pop("PREFECT_API_URL", None)
    return env


class LocalServer:
    """A Prefect API server process on 127.0.0.1 (started now, waited for on ``wait``)."""

    def __init__(self, port: int | None = None, die_with_parent: bool = True, log: Path | None = None,
                 ephemeral: bool = True):
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        out = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(server_command(self.port), env=server_env(ephemeral), stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=out,
                                     preexec_fn=_die_with_parent if die_with_parent else os.setsid)

    def wait(self, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ForgeflowError(f"the local Prefect API server exited with code {self.proc.returncode} "
                                     "while starting (is PREFECT_HOME writable?)")
            if healthy(self.api_url, timeout=0.5):
                return self.api_url
            time.sleep(0.1)
        self.stop()
        raise ForgeflowError(f"the local Prefect API server did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        stop_process_group(self.proc.pid, timeout)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=0.5)


def stop_process_group(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)  # reap our own child so it does not linger as a zombie
            if not group_alive(pid):
                return
            time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is in process group ``pgid``."""
    import psutil

    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return False


_started: LocalServer | None = None


def start_api_early() -> None:
    """Start this command's temporary server now (no wait) unless an API is given or warm; idempotent."""
    global _started
    if _started is None and not os.environ.get("PREFECT_API_URL") and warm_state() is None:
        _started = LocalServer()


_settings_stack = contextlib.ExitStack()


def planned_api_url() -> str:
    """The URL ``ensure_api`` will export (the rules in the module docstring), known before that API answers: a
    temporary server is started now if it is the one, and not waited for. Lets a LocalCluster start, its workers
    pointed at this API, while the server comes up."""
    from prefect.settings import get_current_settings

    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url  # given, or set in-process (tests)
    if url:
        return url
    state = warm_state()
    if state is not None:
        return state["api_url"]
    start_api_early()
    if _started is None:  # a `forgeflow up` came up meanwhile
        return planned_api_url()
    return _started.api_url


def ensure_api() -> str:
    """This command's API URL (see the module docstring), exported to this process's Prefect settings and to the
    environment its Dask workers inherit. Idempotent; ``stop_started_api`` undoes it at the end of the command."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from forgeflow.flows.shutdown import chain_prefect

    chain_prefect()
    url = planned_api_url()
    if _started is not None and url == _started.api_url:
        url = _started.wait()
    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = url
        _settings_stack.callback(os.environ.pop, "PREFECT_API_URL", None)
    if get_current_settings().api.url != url:
        _settings_stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
    return url


def stop_started_api() -> None:
    """End of the command: restore the settings and stop the temporary server this command started (if any)."""
    global _started
    if _started is not None:
        _drain_prefect()  # logs and events go out while the server still answers (else: minutes of retries)
    _settings_stack.close()
    if _started is not None:
        server, _started = _started, None
        server.stop()


def warm_dask_address() -> str | None:
    """The scheduler of a live `forgeflow up` (its API answers and its scheduler process runs), or None."""
    state = read_state()
    if not state or not state.get("dask_address") or not _alive(state.get("scheduler_pid")):
        return None
    return state["dask_address"] if warm_state() is not None else None


def _alive(pid) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    import psutil

    try:
        return bool(pid) and psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def _drain_prefect(timeout: float = 10.0) -> None:
    """Flush Prefect's background log and event workers of this process to the API."""
    import sys as _sys

    if "prefect" not in _sys.modules:
        return
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)
