"""The thin side of the warm path: hand a `forgeflow` command to the command server `forgeflow up` started.

Python's standard library only (this runs before typer, rich, Prefect or the catalog are imported). ``forward``:

1. finds the server's socket (``zygote.sock`` in ``FORGEFLOW_STATE_DIR``, default ``~/.forgeflow``); no socket, no
   answer, or a command it does not serve (``up``, ``down``) -> ``None``: the caller runs the command in-process;
2. sends argv, the working directory, umask, environment and this process's stdin/stdout/stderr file descriptors
   (``socket.send_fds``) to the server, which checks that it can run the command exactly as this process would (same
   interpreter, same forgeflow code, same ``PREFECT_*``/``DASK_*``/``PYTHON*`` settings, its code unchanged since it
   started) and answers yes or no (no -> ``None``, the in-process path);
3. once it runs: relays SIGINT, SIGTERM, SIGHUP and SIGQUIT to the command (Ctrl-C behaves as in-process) and returns
   the command's exit status. If this process dies, the server stops the command.

``FORGEFLOW_WARM=0`` turns forwarding off.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

SOCKET_NAME = "zygote.sock"
NOT_SERVED = {"up", "down"}  # they start or stop the server itself
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# set by every command at start (flows.cli.main), so they count as set when environments are compared
ENV_DEFAULTS = {
    # the ephemeral API server can take long to start on a busy 2-core machine (Prefect's default is 20 s)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry calls from the local API
}
IN_SERVER = False  # set in the server's command children: they run the command, they do not forward it


def profile_path() -> str | None:
    """``FORGEFLOW_WARM_PROFILE``: where the server's child writes a cProfile of the command (diagnosis)."""
    return os.environ.get("FORGEFLOW_WARM_PROFILE") or None


def socket_path() -> Path:
    return Path(os.environ.get("FORGEFLOW_STATE_DIR") or Path.home() / ".forgeflow") / SOCKET_NAME


def code_root() -> str:
    """The folder of the forgeflow code this process runs (the server must run the same)."""
    return os.path.realpath(os.path.dirname(os.path.abspath(__file__)))


def request(args: list[str]) -> dict:
    return {"argv": list(args), "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask(),
            "executable": os.path.realpath(sys.executable), "code": code_root()}


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _send(sock: socket.socket, payload: bytes, fds: list[int]) -> None:
    data = struct.pack("!I", len(payload)) + payload
    sent = socket.send_fds(sock, [data], fds)  # the descriptors ride on the first bytes
    if sent < len(data):
        sock.sendall(data[sent:])


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def next(self) -> dict | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def forward(args: list[str]) -> int | None:
    """Run ``forgeflow ARGS`` in the warm command server; its exit status, or None when it is not used."""
    if IN_SERVER or os.environ.get("FORGEFLOW_WARM", "1") in ("0", "false", "no") or (args and args[0] in NOT_SERVED):
        return None
    path = socket_path()
    if not path.exists():
        return None
    # Signals are caught from before the request goes out: the server may start the command before its "ok" arrives
    # here, and a signal in that window must reach the command, not kill this process and leave the command orphaned.
    pending: list[int] = []
    live: list[socket.socket] = []

    def relay(signum, frame):
        if not live:
            pending.append(int(signum))
            return
        try:
            live[0].sendall(f'{{"signal": {int(signum)}}}\n'.encode())
        except OSError:
            pass

    previous = {s: signal.signal(s, relay) for s in RELAYED}
    sock = None
    try:
        try:
            for fd in (0, 1, 2):
                os.fstat(fd)  # a closed stdin/stdout/stderr: not for the warm path
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2.0)
            sock.connect(os.fspath(path))
            _send(sock, json.dumps(request(args)).encode(), [0, 1, 2])
            lines = _Lines(sock)
            reply = lines.next()
        except (OSError, ValueError):
            reply = None
        if not reply or not reply.get("ok"):
            if reply and os.environ.get("FORGEFLOW_WARM_DEBUG"):
                sys.stderr.write(f"forgeflow: warm path not used: {reply.get('reason', 'no answer')}\n")
            return None  # in-process; a signal held meanwhile is re-raised below, once the handlers are back
        # from here the command runs in the server: relay signals, wait for its exit status
        sock.settimeout(None)
        live.append(sock)
        for signum in pending:
            relay(signum, None)
        pending.clear()
        return _wait_exit(lines)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if sock is not None:
            sock.close()
        for signum in pending:
            signal.raise_signal(signum)  # as if it came now: the in-process path (or the default) handles it


def _wait_exit(lines: _Lines) -> int:
    while True:
        try:
            msg = lines.next()
        except (OSError, ValueError):
            msg = None
        if msg is None:
            sys.stderr.write("forgeflow: the warm command server closed the connection before the command "
                             "ended (is `forgeflow up` still running?)\n")
            return 1
        if "exit" in msg:
            if os.environ.get("FORGEFLOW_WARM_DEBUG"):
                sys.stderr.write(f"forgeflow: ran in the warm command server: {msg.get('wall_s')} s wall, "
                                 f"{msg.get('cpu_s')} s CPU\n")
            return int(msg["exit"])
