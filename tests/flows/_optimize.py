"""The session's one full `forgeflow optimize --model forgeflow:digits_cnn --stages 2 --json` (minutes on 2 cores) as a
user runs it: a fresh interpreter, its own Dask LocalCluster (one worker), reporting to the session's Prefect API.

tests/conftest.py starts it in the background as soon as the collected tests include one that uses it (the
``optimized_cnn`` fixture, tests/flows/conftest.py), once the session's API answers: the command runs on one worker
thread (Dask sets one BLAS/OpenMP thread per worker) while the tests before tests/flows run in this process, instead of
the suite waiting for it. The fixture then only waits for its result. What is checked is the same run: same command,
same environment as when the tests were collected, same checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Mapping, Optional

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["optimize", "--model", "forgeflow:digits_cnn", "--stages", "2", "--json"]
TIMEOUT = 900


class OptimizeRun:
    """The command in a thread of its own: ``wait()`` gives ``(catalog folder, CompletedProcess)``."""

    def __init__(self, tmp: Path, env: Mapping[str, str], api_url: Callable[[], Optional[str]]):
        self.cat = str(tmp / "cat")
        self.proc: Optional[subprocess.Popen] = None
        self.completed: Optional[subprocess.CompletedProcess] = None
        self.error: Optional[BaseException] = None
        self._env = {**env, "FORGEFLOW_DASK_WORKERS": "1", "PREFECT_HOME": str(tmp / "prefect_home"),
                     "FORGEFLOW_STATE_DIR": str(tmp / "state")}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(api_url,), name="optimize-digits-cnn", daemon=True)
        self._thread.start()

    def _run(self, api_url: Callable[[], Optional[str]]) -> None:
        try:
            url = api_url()  # the session's API, once it answers (the command reports to it)
            env = dict(self._env)
            if url:
                env["PREFECT_API_URL"] = url
            cmd = [sys.executable, "-m", "forgeflow.flows.cli", *ARGS, "--catalog", self.cat]
            if self._stopped:
                return
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                         cwd=ROOT, start_new_session=True)
            try:
                out, err = self.proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.stop()
                raise
            self.completed = subprocess.CompletedProcess(cmd, self.proc.returncode, out, err)
        except BaseException as exc:  # re-raised by wait(), in the test that needs the run
            self.error = exc

    def wait(self) -> tuple[str, subprocess.CompletedProcess]:
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.completed is not None, "the background optimize was stopped"
        return self.cat, self.completed

    def stop(self) -> None:
        """At the session's end: end the command (and its cluster) if it still runs."""
        self._stopped = True
        if self.proc is not None and self.proc.poll() is None:
            import signal

            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass


STARTED: dict[str, OptimizeRun] = {}
