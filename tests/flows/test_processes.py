"""What a command leaves running, measured on real processes: one Prefect API per run (Dask workers report to it,
never start servers of their own), a bounded SIGTERM shutdown that leaves no server, scheduler or worker behind, and
`forgeflow up` / `forgeflow down` (a warm API + Dask cluster that later commands find, and that `down` removes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests._cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
MSR = {"maxFPGAs": 2, "nodes": [{"id": i, "fpgaLatency": float(i), "size": 1.0} for i in range(1, 5)],
       "edges": [{"sourceId": i, "destId": i + 1, "cost": 0.5} for i in range(1, 4)]}


def cold_env(tmp_path: Path, **extra: str) -> dict:
    """A user's cold shell: no PREFECT_API_URL, no `forgeflow up` state."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"FORGEFLOW_STATE_DIR": str(tmp_path / "state"), "FORGEFLOW_DASK_WORKERS": "1",
                "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(tmp_path / "home")), **extra})
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "forgeflow.flows.cli", *args]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.slow
def test_one_api_per_run_and_sigterm_leaves_nothing_behind(tmp_path):
    cat = tmp_path / "cat"
    proc = subprocess.Popen(cli("optimize", "--model", "forgeflow:digits_cnn", "--stages", "2", "--catalog", str(cat)),
                            env=cold_env(tmp_path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    seen: dict[int, str] = {}
    servers: set[int] = set()
    try:
        deadline = time.monotonic() + 400
        from forgeflow.catalog import open_catalog

        while time.monotonic() < deadline and proc.poll() is None:
            for p in descendants(proc.pid):
                line = cmdline(p)
                seen.setdefault(p.pid, line)
                if "uvicorn" in line:
                    servers.add(p.pid)
            # a step has finished on a Dask worker: the worker has talked to the API
            if (cat / "tables" / "step_cache").exists() and open_catalog(str(cat)).read("step_cache").num_rows:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        workers = [pid for pid, line in seen.items() if "multiprocessing" in line or "spawn_main" in line]
        assert workers, seen  # the LocalCluster's worker processes
        assert len(servers) == 1, [seen[s] for s in servers]  # one API: the workers started none of their own
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read().decode()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert took < 20, took  # bounded: the watchdog ends it within its grace period
    time.sleep(1.0)
    left = [seen[pid] for pid in seen if alive(pid)]
    assert left == []  # no server, scheduler or worker process behind
    from forgeflow.catalog import open_catalog

    runs = open_catalog(str(cat)).read("runs").to_pylist()
    assert {r["status"] for r in runs} == {"running", "failed"}  # the run says it did not finish


@pytest.mark.slow
def test_up_then_commands_use_it_then_down_leaves_nothing(tmp_path):
    env = cold_env(tmp_path)
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(MSR))
    up = subprocess.run(cli("up", "--port", "0", "--workers", "1", "--json"), env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
    state_file = tmp_path / "state" / "up.json"
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        state = json.loads(up.stdout.strip().splitlines()[-1])
        assert json.loads(state_file.read_text())["api_url"] == state["api_url"]
        pids = list(state["pids"].values())
        assert all(alive(p) for p in pids)
        again = subprocess.run(cli("up", "--json"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["status"] == "already up"

        cmd = subprocess.Popen(cli("partition", "--graph", str(graph), "--stages", "2", "--catalog",
                                   str(tmp_path / "cat"), "--json"), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        started: set[str] = set()
        while cmd.poll() is None:
            started.update(cmdline(p) for p in descendants(cmd.pid))
            time.sleep(0.05)
        out, err = cmd.communicate()
        assert cmd.returncode == 0, err[-3000:]
        assert not [c for c in started if "uvicorn" in c or "spawn_main" in c]  # no server, no cluster of its own
        plan = json.loads(out.strip().splitlines()[-1])
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: state["api_url"]}), get_client(sync_client=True) as c:
            names = {r.name for r in c.read_flow_runs()}
            assert names  # the flow run is recorded in the warm API
        assert plan["k"] >= 1
        # it ran in the warm command server `up` started (forked there: not a process of its own)
        assert "forgeflow partition" in (tmp_path / "state" / "warm_server.log").read_text()
    finally:
        down = subprocess.run(cli("down", "--json"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr[-3000:]
    assert set(json.loads(down.stdout.splitlines()[-1])["stopped"]) == {"prefect", "scheduler", "workers",
                                                                           "warm_server"}
    assert not state_file.exists() and not (tmp_path / "state" / "zygote.sock").exists()
    assert not [p for p in pids if alive(p)]
    for pid in pids:  # nothing of their process groups either (the workers' nannies' children)
        assert not [p for p in psutil.process_iter() if _pgid(p.pid) == pid and alive(p.pid)]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_invalid_settings_are_one_line_exit_2_before_any_run(tmp_path):
    cat = tmp_path / "cat"
    for name, value, message in [("FORGEFLOW_DASK_WORKERS", "0", "FORGEFLOW_DASK_WORKERS must be >= 1"),
                                 ("FORGEFLOW_DASK_MEMORY_LIMIT", "lots", "FORGEFLOW_DASK_MEMORY_LIMIT 'lots'"),
                                 ("FORGEFLOW_STEP_RETRIES", "-1", "FORGEFLOW_STEP_RETRIES must be >= 0"),
                                 ("FORGEFLOW_DASK_THREADS", "two", "FORGEFLOW_DASK_THREADS")]:
        p = run_cli("partition", "--graph", str(tmp_path / "missing.json"), "--stages", "2", "--catalog", str(cat),
                    env={name: value})  # in this process (tests/_cli.py): what the command answers
        assert p.returncode == 2, (name, p.stderr)
        assert message in p.stderr and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert not cat.exists() or not list(cat.rglob("*.parquet"))
