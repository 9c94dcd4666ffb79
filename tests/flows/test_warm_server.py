"""The warm command server (flows/warm_server.py) on real processes: a `forgeflow` command handed to it runs with the
caller's stdin/stdout/stderr, cwd and environment, keeps the error contract and --json, gets the caller's signals, is
stopped when its caller dies, and is refused (the command then runs in-process) when the caller's settings differ.

One server for the module (it imports the CLI, Prefect and the catalog once: seconds); each test is a few thin
`forgeflow` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
MSR = {"maxFPGAs": 2, "nodes": [{"id": i, "fpgaLatency": float(i), "size": 1.0} for i in range(1, 5)],
       "edges": [{"sourceId": i, "destId": i + 1, "cost": 0.5} for i in range(1, 4)]}
SLOW_SQL = "SELECT count(*) FROM range(100000000000)"  # a read-only query that runs for minutes


pytestmark = pytest.mark.xdist_group("warm_server")  # under pytest-xdist, one worker starts the module's server


@pytest.fixture(scope="module")
def warm(tmp_path_factory, shared_prefect_api):
    state = tmp_path_factory.mktemp("warm_state")
    env = {**os.environ, "FORGEFLOW_STATE_DIR": str(state), "FORGEFLOW_SHUTDOWN_GRACE_S": "1"}
    sock = state / "zygote.sock"
    log = open(state / "warm_server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "forgeflow.flows.warm_server", "--socket", str(sock), "--api-url",
                             shared_prefect_api], env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sock.exists(), (state / "warm_server.log").read_text()[-3000:]
    yield env, state / "warm_server.log", proc
    proc.terminate()
    proc.wait(timeout=30)
    assert not sock.exists()  # a stopped server removes its socket


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "forgeflow.flows.cli", *args]


def served(log: Path) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2)) for m in re.finditer(r"serving pid (\d+): forgeflow (\S+)", log.read_text())]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_partition_runs_warm_with_json_and_error_contract(warm, tmp_path):
    env, log, _ = warm
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(MSR))
    before = len(served(log))
    p = subprocess.run(cli("partition", "--graph", "g.json", "--stages", "2", "--catalog", "cat", "--json"), env=env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)  # relative paths: the caller's cwd
    assert p.returncode == 0, p.stderr[-3000:]
    plan = json.loads(p.stdout.strip().splitlines()[-1])  # stdout carries the JSON
    assert plan["k"] == 2 and plan["catalog"] == str(tmp_path / "cat") and (tmp_path / "cat").is_dir()
    assert [c for _, c in served(log)[before:]] == ["partition"]  # it ran in the warm server

    bad = subprocess.run(cli("partition", "--graph", "missing.json", "--stages", "2", "--catalog", "cat2"), env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: graph file not found: missing.json"]
    assert not (tmp_path / "cat2").exists()  # nothing written
    assert [c for _, c in served(log)[before:]] == ["partition", "partition"]


def test_other_settings_or_opt_out_run_in_process(warm, tmp_path):
    env, log, _ = warm
    before = len(served(log))
    for extra in ({"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "7s"}, {"FORGEFLOW_WARM": "0"}):
        p = subprocess.run(cli("partition", "--graph", "missing.json", "--stages", "2"), env={**env, **extra},
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert p.returncode == 2 and "graph file not found" in p.stderr, p.stderr
    assert len(served(log)) == before  # neither was served: both ran in-process, with the same result
    assert "refused: settings read at import differ: DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT" in log.read_text()


def start_slow_query(env: dict, log: Path, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """A `forgeflow catalog query` that runs for minutes, handed to the warm server: the caller and the command's pid."""
    before = len(served(log))
    query = cli("catalog", "query", SLOW_SQL, "--catalog", str(tmp_path / "cat"))
    p = subprocess.Popen(query, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(served(log)) == before and time.monotonic() < deadline:
        time.sleep(0.005)
    (child, _), = served(log)[before:]
    return p, child


def stopped(pid: int, within: float) -> bool:
    stop = time.monotonic() + within
    while alive(pid) and time.monotonic() < stop:
        time.sleep(0.05)
    return not alive(pid)


def test_sigterm_reaches_the_command_and_a_dead_caller_stops_it(warm, tmp_path):
    env, log, _ = warm
    p, child = start_slow_query(env, log, tmp_path)
    time.sleep(0.5)
    assert p.poll() is None and alive(child)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM  # as the command reports it in-process
    assert stopped(child, within=10)

    # a caller killed outright (no chance to relay anything): the server stops its command
    p, child = start_slow_query(env, log, tmp_path)
    time.sleep(0.5)
    p.kill()
    p.wait()
    assert stopped(child, within=30)


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1])
def test_a_signal_at_any_moment_of_the_start_gives_the_in_process_status(warm, tmp_path, delay):
    """The server forks the command before its "ok" reaches the caller, and the command may be inside an import or a
    DuckDB call when the signal lands: the caller still reports 128 + SIGTERM and the command is stopped."""
    env, log, _ = warm
    p, child = start_slow_query(env, log, tmp_path)
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert stopped(child, within=10)


def test_refusal_rules(tmp_path):
    """What the server refuses (the caller then runs in-process), checked without processes."""
    from forgeflow.flows.warm_client import request
    from forgeflow.flows.warm_server import Server

    url = "http://127.0.0.1:1/api"
    env = {"PREFECT_HOME": "/h", "DASK_X": "1", "PATH": "/bin"}
    server = Server(str(tmp_path / "s.sock"), url, env)
    base = request(["partition", "--stages", "2"]) | {"env": dict(env)}
    assert server.refusal(base) is None
    assert server.refusal(base | {"env": env | {"PATH": "/other", "FORGEFLOW_CATALOG": "x"}}) is None  # run-time
    assert server.refusal(base | {"env": env | {"PREFECT_API_URL": url + "/"}}) is None  # the same API
    assert "PREFECT_HOME" in server.refusal(base | {"env": env | {"PREFECT_HOME": "/other"}})
    assert "DASK_X" in server.refusal(base | {"env": {k: v for k, v in env.items() if k != "DASK_X"}})
    assert "another API" in server.refusal(base | {"env": env | {"PREFECT_API_URL": "http://127.0.0.1:2/api"}})
    assert "interpreter" in server.refusal(base | {"executable": "/usr/bin/python9"})
    assert "code folder" in server.refusal(base | {"code": "/elsewhere"})
    assert "not served" in server.refusal(base | {"argv": ["down"]})
    # ENV_DEFAULTS count as set: a caller without them matches a server started by a command that set them
    from forgeflow.flows.warm_client import ENV_DEFAULTS

    assert Server(str(tmp_path / "t.sock"), url, env | ENV_DEFAULTS).refusal(base) is None
