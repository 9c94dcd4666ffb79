"""The warm command server `forgeflow up` starts: commands without the start-up cost of an interpreter, typer/rich,
Prefect and the catalog.

It imports the CLI, Prefect and the catalog once, points them at the `forgeflow up` API and listens on a Unix socket
(``zygote.sock`` in the state folder, mode 0600). For each command a ``forgeflow`` process hands it
(``flows.warm_client``) it checks that it can run the command exactly as that process would, and then forks one
child that takes over the caller's stdin/stdout/stderr, working directory, umask and environment and runs the normal
``flows.cli.main`` (so the error contract, ``--json``, the bounded Ctrl-C/SIGTERM shutdown are the in-process ones).
The caller gets the exit status; its signals reach the child; if the caller goes away the child gets SIGTERM.

A command is refused (the caller then runs it in-process, the cold path) when the caller's interpreter or forgeflow
code folder differ, when its ``PREFECT_*`` (Prefect reads them at import), ``DASK_*``, ``PYTHON*`` or thread-count
settings differ from the server's, when its ``PREFECT_API_URL`` names another API, or when forgeflow's code changed
on disk since the server imported it (the server then re-executes itself, so the next command is warm again).

The children run in the server's process group (and with a parent-death signal): `forgeflow down` stops the server
group, so no command it ran is left behind. One thread, one selector loop: forking is safe.

    python -m forgeflow.flows.warm_server --socket PATH --api-url URL
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

from forgeflow.flows.warm_client import ENV_DEFAULTS, NOT_SERVED, code_root

# imported once here, so a command's child starts with them loaded (torch stays out: heavy commands import it)
# (what a light command imports at run time, measured with -X importtime on a warm partition)
PRELOAD = ["forgeflow.flows.cli", "prefect", "prefect.flow_engine", "prefect.task_engine", "prefect.task_runners",
           "prefect.client.orchestration", "prefect.artifacts", "prefect.logging.handlers", "prefect.events.worker",
           "prefect.utilities.visualization", "prefect_dask", "fastapi.encoders", "dask", "distributed", "jinja2",
           "email.policy", "httpx", "pyarrow.dataset", "pyarrow.parquet", "matplotlib.pyplot", "highspy",
           "forgeflow.catalog", "forgeflow.flows.runtime", "forgeflow.flows.api", "forgeflow.flows.shutdown",
           "forgeflow.flows.model_policy", "forgeflow.flows.artifacts", "forgeflow.flows.partition",
           "forgeflow.flows.plan", "forgeflow.tasks.step_cache", "forgeflow.tasks.dask_fanout",
           "forgeflow.tasks.partition.steps", "forgeflow.tasks.partition.solve", "forgeflow.tasks.partition.plot",
           "forgeflow.tasks.partition.store", "forgeflow.tasks.partition.adapters", "forgeflow.tasks.profiling.steps",
           "forgeflow.tasks.profiling.graph_files", "forgeflow.tasks.profiling.graph_store"]
# settings read at import (by Prefect, Dask, Python itself or the BLAS/OpenMP runtimes): they must match the caller's
MATCHED_PREFIXES = ("PREFECT_", "DASK_", "PYTHON", "OMP_", "MKL_", "OPENBLAS_", "LD_", "VIRTUAL_ENV", "CONDA_PREFIX",
                    "MPLBACKEND", "MPLCONFIGDIR", "HOME")
MAX_REQUEST = 16 << 20


def matched(env: dict) -> dict:
    """The settings of ``env`` that must match, with the defaults every command sets at its start."""
    return {k: v for k, v in {**ENV_DEFAULTS, **env}.items()
            if k.startswith(MATCHED_PREFIXES) and k != "PREFECT_API_URL"}


class Server:
    def __init__(self, path: str, api_url: str, env: dict) -> None:
        self.path, self.api_url = path, api_url
        self.env = matched(env)  # as it was before the preload (an import may set a default)
        self.code = code_root()
        self.executable = os.path.realpath(sys.executable)
        self.children: dict[int, tuple[socket.socket, int]] = {}  # pid -> (caller connection, pidfd)
        self.sel = selectors.DefaultSelector()
        self.stopping = False
        self.stale = False
        self.mtimes = self._module_mtimes()
        self.served = 0
        self.started: dict[int, float] = {}

    # ---- checks
    @staticmethod
    def _module_mtimes() -> dict[str, float]:
        out = {}
        root = os.path.dirname(code_root()) + os.sep  # the forgeflow package: flows/, tasks/, catalog/
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None)
            if f and os.path.realpath(f).startswith(root):
                try:
                    out[f] = os.stat(f).st_mtime
                except OSError:
                    out[f] = -1.0
        return out

    def _code_changed(self) -> bool:
        for f, m in self.mtimes.items():
            try:
                if os.stat(f).st_mtime != m:
                    return True
            except OSError:
                return True
        return False

    def refusal(self, req: dict) -> str | None:
        """Why this server cannot run ``req`` exactly as the caller would in-process, or None."""
        args = req.get("argv") or []
        if args and args[0] in NOT_SERVED:
            return f"`{args[0]}` is not served"
        if req.get("executable") != self.executable:
            return f"another interpreter ({req.get('executable')})"
        if req.get("code") != self.code:
            return f"another forgeflow code folder ({req.get('code')})"
        env = req.get("env") or {}
        url = env.get("PREFECT_API_URL")
        if url and url.rstrip("/") != self.api_url.rstrip("/"):
            return f"PREFECT_API_URL names another API ({url})"
        theirs = matched(env)
        if theirs != self.env:
            diff = sorted(k for k in set(theirs) | set(self.env) if theirs.get(k) != self.env.get(k))
            return "settings read at import differ: " + ", ".join(diff[:8])
        if self._code_changed():
            self.stale = True
            return "forgeflow's code changed since `forgeflow up` (the server restarts itself)"
        return None

    # ---- loop
    def serve(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.path)
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.rfd, self.wfd = rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_stop)
        self.sel.register(rfd, selectors.EVENT_READ, ("wakeup", None))
        print(f"forgeflow warm server {os.getpid()} listening on {self.path} (API {self.api_url})", flush=True)
        while not self.stopping:
            for key, _ in self.sel.select(timeout=5.0):
                kind, pid = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "wakeup":
                    try:
                        os.read(rfd, 512)
                    except OSError:
                        pass
                elif kind == "exit":
                    self._reap(pid)
                elif kind == "caller":
                    self._from_caller(pid)
            if self.stale and not self.children:
                self._restart()
        self._shutdown()

    def _inherited(self, conn: socket.socket) -> list:
        return [self.listener, self.sel, self.rfd, self.wfd, conn] + [c for c, _ in self.children.values()] \
            + [fd for _, fd in self.children.values()]

    def _on_stop(self, signum, frame) -> None:
        self.stopping = True

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            head, fds, _, _ = socket.recv_fds(conn, 65536, 3)
            if uid != os.getuid():
                raise ValueError(f"caller uid {uid} is not this server's")
            if len(head) < 4:
                raise ValueError("short request")
            size = struct.unpack("!I", head[:4])[0]
            if size > MAX_REQUEST:
                raise ValueError("request too large")
            data = head[4:]
            while len(data) < size:
                chunk = conn.recv(min(1 << 20, size - len(data)))
                if not chunk:
                    raise ValueError("truncated request")
                data += chunk
            req = json.loads(data)
            if len(fds) != 3:
                raise ValueError("the caller's stdin/stdout/stderr did not arrive")
            why = self.refusal(req)
        except (OSError, ValueError) as exc:
            why = f"bad request: {exc}"
        if why is not None:
            self._reply(conn, {"ok": False, "reason": why})
            for fd in fds:
                os.close(fd)
            conn.close()
            print(f"refused: {why}", flush=True)
            return
        pid = os.fork()
        if pid == 0:
            _child(req, fds, self.api_url, self._inherited(conn))  # never returns
        for fd in fds:
            os.close(fd)
        conn.settimeout(None)
        pidfd = os.pidfd_open(pid)
        self.children[pid] = (conn, pidfd)
        self.started[pid] = time.monotonic()
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", pid))
        self.sel.register(conn, selectors.EVENT_READ, ("caller", pid))
        self._reply(conn, {"ok": True})
        self.served += 1
        print(f"serving pid {pid}: forgeflow {' '.join(req['argv'][:1])}", flush=True)

    @staticmethod
    def _reply(conn: socket.socket, msg: dict) -> None:
        try:
            conn.sendall(json.dumps(msg).encode() + b"\n")
        except OSError:
            pass

    def _from_caller(self, pid: int) -> None:
        conn, _ = self.children[pid]
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:  # the caller went away: stop its command
            self.sel.unregister(conn)
            _kill(pid, signal.SIGTERM)
            return
        for line in data.splitlines():
            try:
                sig = int(json.loads(line)["signal"])
            except (ValueError, KeyError, TypeError):
                continue
            if sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                _kill(pid, sig)

    def _reap(self, pid: int) -> None:
        conn, pidfd = self.children.pop(pid)
        cpu = 0.0
        try:
            _, status, usage = os.wait4(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as a shell reports it
            cpu = usage.ru_utime + usage.ru_stime
        except ChildProcessError:
            code = 1
        self.sel.unregister(pidfd)
        os.close(pidfd)
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        wall = time.monotonic() - self.started.pop(pid, time.monotonic())
        self._reply(conn, {"exit": code, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4)})
        conn.close()
        print(f"pid {pid} exited {code} ({wall:.2f} s wall, {cpu:.2f} s CPU)", flush=True)

    def _shutdown(self, grace: float = 8.0) -> None:
        """Stop: no new commands; running ones get SIGTERM (their bounded shutdown), SIGKILL after ``grace``."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        for pid in self.children:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    conn, pidfd = self.children.pop(pid)
                    self._reply(conn, {"exit": 128 + signal.SIGTERM})
                    conn.close()
                    os.close(pidfd)
            time.sleep(0.05)
        for pid in self.children:
            _kill(pid, signal.SIGKILL)

    def _restart(self) -> None:
        print("forgeflow's code changed: re-executing", flush=True)
        try:
            os.unlink(self.path)
        except OSError:
            pass
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "forgeflow.flows.warm_server", "--socket", self.path,
                                  "--api-url", self.api_url])


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _child(req: dict, fds: list[int], api_url: str, inherited: list) -> None:
    """In the forked child: become the caller's command and run the normal CLI main; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as Python's own start-up sets it
        _die_with_parent()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for thing in inherited:  # the listener, the selector, other callers' connections: not the command's
            try:
                os.close(thing) if isinstance(thing, int) else thing.close()
            except OSError:
                pass
        os.chdir(req["cwd"])
        os.umask(int(req.get("umask", 0o22)))
        env = dict(req["env"])
        env.setdefault("PREFECT_API_URL", api_url)  # what the in-process path resolves through the state file
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["forgeflow", *req["argv"]]
        _fresh_std_streams()
        from forgeflow.flows import cli, cli_common, warm_client

        warm_client.IN_SERVER = True

        cli_common.err_console.__init__(stderr=True)  # the caller's terminal: width, colour, isatty
        profile = warm_client.profile_path()  # a cProfile of the command, for diagnosis
        try:
            if profile:
                import cProfile

                cProfile.runctx("cli.main()", globals(), {"cli": cli}, profile)
            else:
                cli.main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                sys.stderr.write(f"{exc.code}\n")
                code = 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # Prefect's log and event workers flush, as at a normal interpreter exit
        except BaseException:
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code & 0xFF)


def _fresh_std_streams() -> None:
    """Text streams over the caller's descriptors, buffered as a fresh interpreter would buffer them."""
    import io

    def stream(fd: int, mode: str, tty: bool, errors: str):
        raw = io.FileIO(fd, mode, closefd=False)
        if mode == "r":
            buf = io.BufferedReader(raw)
        else:
            buf = io.BufferedWriter(raw)
        return io.TextIOWrapper(buf, encoding="utf-8", errors=errors,
                                line_buffering=tty and mode == "w", write_through=fd == 2)

    sys.stdin = stream(0, "r", os.isatty(0), "strict")
    sys.stdout = stream(1, "w", os.isatty(1), "strict")
    sys.stderr = stream(2, "w", os.isatty(2), "backslashreplace")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def preload() -> list[str]:
    failed = []
    for name in PRELOAD:
        try:
            mod = importlib.import_module(name)
            if name == "forgeflow.flows.cli":
                getattr(mod, "app")  # typer, rich and every command module
        except Exception as exc:  # a missing optional module only costs warmth
            failed.append(f"{name}: {exc}")
    try:
        from prefect.settings import get_current_settings

        from forgeflow.catalog import all_tables

        get_current_settings()
        all_tables()  # the table modules
    except Exception as exc:
        failed.append(str(exc))
    return failed


def threads() -> int:
    """Native threads of this process (a fork copies only the calling one: the server must have no other)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="forgeflow's warm command server (started by `forgeflow up`)")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--api-url", required=True)
    args = ap.parse_args(argv)
    env = dict(os.environ)
    os.environ["PREFECT_API_URL"] = args.api_url  # before Prefect is imported: its settings are read then
    t0 = time.perf_counter()
    for line in preload():
        print(f"preload failed: {line}", flush=True)
    print(f"preloaded in {time.perf_counter() - t0:.1f} s; {threads()} thread(s)", flush=True)
    Server(args.socket, args.api_url, env).serve()


if __name__ == "__main__":
    main()
