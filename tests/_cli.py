"""The `forgeflow` CLI in the test's own process: ``main(argv)`` with stdout and stderr captured, returned as a
``subprocess.CompletedProcess`` (exit code, stdout, stderr) like a run of ``forgeflow ARGS``.

A fresh interpreter pays torch + Prefect imports (5-15 s on 2 cores) before the command does anything. Tests of what
a command answers (bad input: one line, exit 2, nothing written; --json output; what it writes to the catalog) use
this. Tests of the process itself (signals, what it leaves running, cold start, the console script) keep real
subprocesses (tests/ops/_procs.py, tests/flows/test_processes.py).

What a command changes in this process is undone after it: environment variables, the working directory and the
log levels ``--json`` sets.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import traceback
from pathlib import Path
from typing import Mapping, Optional

_LOGGERS = ("prefect", "prefect.flow_runs", "prefect.task_runs", "distributed")


def run_cli(*args: str, env: Optional[Mapping[str, Optional[str]]] = None, cwd: Optional[Path] = None
            ) -> subprocess.CompletedProcess:
    """``forgeflow *args`` in this process; ``env`` is set for the call (a None value removes the variable)."""
    from forgeflow.flows.cli import main

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    out, err = io.StringIO(), io.StringIO()
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    err.write(exc.code + "\n")
            except Exception:  # what an uncaught exception does to the real process: a traceback and exit 1
                err.write(traceback.format_exc())
                code = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
    return subprocess.CompletedProcess(["forgeflow", *map(str, args)], code, out.getvalue(), err.getvalue())
