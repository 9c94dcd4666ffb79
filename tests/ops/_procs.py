"""Real child processes for the operations tests: started in their own session, logs to a file, always killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[2]


class Proc:
    """A child process (own process group) whose output goes to ``log``; ``stop()`` kills the whole group."""

    def __init__(self, args: Sequence[str], log: Path, env: dict | None = None, cwd: Path | None = None):
        self.args = list(args)
        self.log = log
        self._fh = open(log, "wb")
        self.popen = subprocess.Popen(self.args, stdout=self._fh, stderr=subprocess.STDOUT, cwd=cwd or REPO,
                                      env={**os.environ, **(env or {})}, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, tail: int = 4000) -> str:
        try:
            return self.log.read_bytes()[-tail:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process itself only (not its group): what a crash of that one process looks like."""
        if self.alive():
            os.kill(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds."""
        try:
            if self.alive():
                try:
                    os.killpg(self.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)  # children the leader left behind
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._fh.close()


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.5,
               procs: Sequence[Proc] = ()) -> object:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` (with the logs of dead ``procs``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        for p in procs:
            if not p.alive():
                raise AssertionError(f"{what}: process {p.args[:3]} exited with {p.popen.returncode}:\n{p.output()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.args[:3]}:\n{p.output(2000)}" for p in procs)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status == 200
    except Exception:
        return False


def forgeflow(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the `forgeflow` CLI in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "forgeflow.flows.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def bin_path(name: str) -> str:
    """A console script installed next to this interpreter (prefect, dask)."""
    cand = Path(sys.executable).with_name(name)
    return str(cand) if cand.exists() else name
