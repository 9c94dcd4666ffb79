"""The session's one full `forgeflow optimize --model forgeflow:digits_cnn --stages 2 --json` (minutes on 2 cores) as a
user runs it: a fresh interpreter, its own Dask LocalCluster (one worker), reporting to the session's Prefect API.

tests/conftest.py starts it in the background as soon as the collected tests include one that uses it (the
``optimized_cnn`` fixture, tests/flows/conftest.py): the command runs on one worker thread (Dask sets one BLAS/OpenMP
thread per worker) while other tests run, instead of the suite waiting for it. The fixture then only waits for its
result. What is checked is the same run: same command, same environment as when the tests were collected, same checks.

The run lives in a folder of the session (``FORGEFLOW_TEST_OPTIMIZE_DIR``, made by the main pytest process) and talks
through files, so that every pytest-xdist worker shares the one run: the first process to claim the folder (an
exclusive create) starts a detached launcher (``python -m tests.flows._optimize``), which waits for the API, runs the
command and writes its stdout, stderr and exit code there; any process waits for the exit code. The main process kills
the launcher's process group (the command and its cluster) at the session's end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Optional

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["optimize", "--model", "forgeflow:digits_cnn", "--stages", "2", "--json"]
TIMEOUT = 900
API_WAIT = 240


class OptimizeRun:
    """The run of folder ``tmp``: ``wait()`` gives ``(catalog folder, CompletedProcess)``."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.cat = str(self.tmp / "cat")

    @classmethod
    def start(cls, tmp: Path, env: Mapping[str, str], api_url: Optional[str]) -> "OptimizeRun":
        """Start the command in the background unless a process of this session already claimed ``tmp``."""
        run = cls(tmp)
        run.tmp.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(run.tmp / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return run
        child = {**env, "FORGEFLOW_DASK_WORKERS": "1", "PREFECT_HOME": str(run.tmp / "prefect_home"),
                 "FORGEFLOW_STATE_DIR": str(run.tmp / "state")}
        child.pop("PREFECT_API_URL", None)
        if api_url:
            child["PREFECT_API_URL"] = api_url
        proc = subprocess.Popen([sys.executable, "-m", "tests.flows._optimize", str(run.tmp)], env=child, cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        (run.tmp / "pgid.tmp").write_text(str(proc.pid))
        os.replace(run.tmp / "pgid.tmp", run.tmp / "pgid")
        return run

    def wait(self) -> tuple[str, subprocess.CompletedProcess]:
        rc_file = self.tmp / "rc"
        deadline = time.monotonic() + API_WAIT + TIMEOUT + 60
        while not rc_file.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the background optimize gave no result in {API_WAIT + TIMEOUT + 60} s")
            pgid = self._pgid()
            if pgid is not None and not _alive(pgid) and not rc_file.exists():
                raise RuntimeError("the background optimize ended without a result (killed?)")
            time.sleep(0.5)
        out = (self.tmp / "stdout").read_text() if (self.tmp / "stdout").exists() else ""
        err = (self.tmp / "stderr").read_text() if (self.tmp / "stderr").exists() else ""
        return self.cat, subprocess.CompletedProcess(ARGS, int(rc_file.read_text()), out, err)

    def _pgid(self) -> Optional[int]:
        try:
            return int((self.tmp / "pgid").read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """At the session's end (main process): end the command and its cluster if they still run."""
        pgid = self._pgid()
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (its parent has not reaped it yet) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _launch(tmp: Path) -> int:
    """Wait for the API the run reports to, run the command, write its output and exit code (last, atomically)."""
    url = os.environ.get("PREFECT_API_URL")
    out, err = tmp / "stdout", tmp / "stderr"
    rc = 1
    try:
        if url:
            from forgeflow.flows.api import healthy

            deadline = time.monotonic() + API_WAIT
            while not healthy(url, timeout=0.5):
                if time.monotonic() > deadline:
                    err.write_text(f"the session's Prefect API {url} did not answer within {API_WAIT} s\n")
                    return rc
                time.sleep(0.2)
        cmd = [sys.executable, "-m", "forgeflow.flows.cli", *ARGS, "--catalog", str(tmp / "cat")]
        with open(out, "w") as o, open(err, "w") as e:
            try:
                rc = subprocess.run(cmd, stdout=o, stderr=e, cwd=ROOT, timeout=TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                e.write(f"\nthe background optimize did not finish within {TIMEOUT} s\n")
                rc = 124
        return rc
    finally:
        (tmp / "rc.tmp").write_text(str(rc))
        os.replace(tmp / "rc.tmp", tmp / "rc")


STARTED: dict[str, OptimizeRun] = {}

if __name__ == "__main__":
    sys.exit(0 if _launch(Path(sys.argv[1])) is not None else 1)
