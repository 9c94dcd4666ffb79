"""`forgeflow up` / `forgeflow down`: a local Prefect server and Dask cluster that stay warm between commands.

`up` starts, each in its own session so they outlive the command: a Prefect API server on 127.0.0.1 (port 4200 by
default, Prefect's standard address), a Dask scheduler and its workers (which report to that server). It writes
their addresses and process ids to ``up.json`` in ``FORGEFLOW_STATE_DIR`` (default ``~/.forgeflow``); every later
command finds them there (``flows.api``) and skips the start-up: no temporary server, no LocalCluster. `down` stops
each process group (SIGTERM, SIGKILL after a timeout), checks that none is left and removes the state file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from forgeflow.flows.cli_common import JsonOpt, emit_json, err_console
from forgeflow.tasks.errors import ForgeflowError


def _spawn(args: list[str], log, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)


def _wait_for(what: str, ok, timeout: float, procs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs:
            if p.poll() is not None:
                raise ForgeflowError(f"{name} exited with code {p.returncode} while starting (see its log)")
        if ok():
            return
        time.sleep(0.1)
    raise ForgeflowError(f"{what} did not come up within {timeout:.0f} s")


def up(
    port: int = typer.Option(4200, "--port", help="Port of the Prefect API on 127.0.0.1 (0: any free port)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="Dask worker processes [env FORGEFLOW_DASK_WORKERS]"),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads per worker [env FORGEFLOW_DASK_THREADS]"),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds to wait for everything to come up"),
    warm: bool = typer.Option(True, "--warm/--no-warm", help="Also start the warm command server: later `forgeflow` "
                              "commands run in a process forked from one that has the CLI, Prefect and the catalog "
                              "already imported (see flows/warm_server.py; FORGEFLOW_WARM=0 turns it off per call)"),
    json_out: bool = JsonOpt,
) -> None:
    """Start a local Prefect server and Dask cluster that later commands use (stop them with `forgeflow down`)."""
    from forgeflow.flows import api
    from forgeflow.flows.settings import load_settings

    settings = load_settings()
    workers = settings.dask_workers if workers is None else workers
    threads = settings.dask_threads if threads is None else threads
    if workers < 1 or threads < 1:
        raise ForgeflowError("--workers and --threads must be >= 1")
    state = api.warm_state()
    if state is not None:
        _report(state, json_out, "already up")
        return
    old = api.read_state()
    if old is not None:
        live = [n for n, pid in (old.get("pids") or {}).items() if api._alive(pid)]
        if live:
            raise ForgeflowError(f"a forgeflow up is running ({', '.join(live)}) but its API {old.get('api_url')} does "
                                 "not answer; run `forgeflow down` first")
        api.state_path().unlink(missing_ok=True)  # a stale file: everything it names is gone
    if port and not _port_free(port):
        raise ForgeflowError(f"port {port} on 127.0.0.1 is in use; give another with --port (0 for any free port)")
    folder = api.state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen]] = []
    try:
        server = api.LocalServer(port=port or None, die_with_parent=False, log=folder / "prefect.log", ephemeral=False)
        procs.append(("the Prefect server", server.proc))
        sched_file = folder / "scheduler.json"
        sched_file.unlink(missing_ok=True)
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               "PREFECT_API_URL": server.api_url, "DASK_LOGGING__DISTRIBUTED": "warning"}
        log = open(folder / "dask.log", "ab")
        sched = _spawn([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--no-dashboard", "--scheduler-file", str(sched_file)], log, env)
        procs.append(("the Dask scheduler", sched))
        _wait_for("the Dask scheduler", lambda: _scheduler_address(sched_file) is not None, timeout, procs)
        address = _scheduler_address(sched_file)
        wk = _spawn([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", str(workers),
                     "--nthreads", str(threads), "--memory-limit", settings.dask_memory_limit, "--no-dashboard",
                     "--host", "127.0.0.1"], log, env)
        procs.append(("the Dask workers", wk))
        state = {"api_url": server.api_url, "dask_address": address, "workers": workers, "threads": threads,
                 "pids": {"prefect": server.proc.pid, "scheduler": sched.pid, "workers": wk.pid},
                 "scheduler_pid": sched.pid, "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                 "prefect_home": os.environ.get("PREFECT_HOME"), "logs": str(folder)}
        api.state_path().write_text(json.dumps(state, indent=1) + "\n")  # written early: `down` can stop a half-up
        _wait_for("the Prefect server", lambda: api.healthy(server.api_url), timeout, procs)
        _wait_for(f"{workers} Dask worker(s)", lambda: _workers_ready(address, workers), timeout, procs)
        if warm:
            zyg = _start_warm_server(folder, server.api_url)
            procs.append(("the warm command server", zyg))
            state["pids"]["warm_server"] = zyg.pid
            state["warm_socket"] = str(folder / "zygote.sock")
            api.state_path().write_text(json.dumps(state, indent=1) + "\n")
            _wait_for("the warm command server", lambda: os.path.exists(state["warm_socket"]), timeout, procs)
    except BaseException:
        for _, p in reversed(procs):
            api.stop_process_group(p.pid)
        api.state_path().unlink(missing_ok=True)
        raise
    _report(state, json_out, "up")


def _start_warm_server(folder, api_url: str) -> subprocess.Popen:
    """The warm command server, in its own session, with this command's environment (the settings a caller's
    environment must match) and the API; its log is warm_server.log."""
    from forgeflow.flows.warm_client import SOCKET_NAME

    sock = folder / SOCKET_NAME
    sock.unlink(missing_ok=True)
    log = open(folder / "warm_server.log", "ab")
    return _spawn([sys.executable, "-m", "forgeflow.flows.warm_server", "--socket", str(sock), "--api-url", api_url],
                  log, {**os.environ, "PREFECT_API_URL": api_url})


def _scheduler_address(path) -> str | None:
    """The address in the scheduler file once it is whole (the scheduler writes it while we poll)."""
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def _workers_ready(address: str, n: int) -> bool:
    from distributed import Client

    try:
        with Client(address, timeout=2) as c:
            return len(c.scheduler_info()["workers"]) >= n
    except (OSError, TimeoutError):
        return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop(state: dict) -> list[str]:
    from forgeflow.flows import api

    stopped = []
    for name in ("warm_server", "workers", "scheduler", "prefect"):
        pid = (state.get("pids") or {}).get(name)
        if pid and api._alive(pid):
            api.stop_process_group(int(pid), timeout=10.0)
            stopped.append(name)
    return stopped


def _report(state: dict, json_out: bool, word: str) -> None:
    if json_out:
        emit_json({"status": word, **state})
        return
    err_console.print(f"[green]forgeflow {word}[/green]: Prefect API {state['api_url']}, Dask scheduler "
                      f"{state['dask_address']} ({state['workers']} worker(s) x {state['threads']} thread(s))")
    print(f"state {os.fspath(_state_path())}; commands use these until `forgeflow down`")


def _state_path():
    from forgeflow.flows import api

    return api.state_path()


def down(json_out: bool = JsonOpt) -> None:
    """Stop the Prefect server and Dask cluster `forgeflow up` started; nothing of theirs is left running."""
    from forgeflow.flows import api

    state = api.read_state()
    if state is None:
        if json_out:
            emit_json({"status": "down", "stopped": []})
        else:
            print("nothing to stop (no forgeflow up state)")
        return
    stopped = _stop(state)
    left = [n for n, pid in (state.get("pids") or {}).items() if api._alive(pid)]
    if left:
        raise ForgeflowError(f"could not stop: {', '.join(left)} (pids {state['pids']})")
    api.state_path().unlink(missing_ok=True)
    if state.get("warm_socket"):
        Path(state["warm_socket"]).unlink(missing_ok=True)
    if json_out:
        emit_json({"status": "down", "stopped": stopped})
    else:
        print(f"stopped {', '.join(stopped) or 'nothing (already gone)'}")


def register(app: typer.Typer) -> None:
    app.command(name="up")(up)
    app.command(name="down")(down)
