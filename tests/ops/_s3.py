"""moto's S3 API on 127.0.0.1 that can be stopped like a crashed server and started again with its data.

``stop()`` closes the listening socket and resets every open connection (keep-alive connections included, which
``ThreadedMotoServer.stop`` leaves serving); moto keeps its buckets in this process's memory, so ``start()`` on the
same port serves the same objects again, as a restarted S3-compatible store would.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable, Optional

from werkzeug.serving import WSGIRequestHandler, make_server


class RestartableS3:
    def __init__(self, port: int):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        # called with (method, path) before each request is served; returning True stops the server at once,
        # dropping that request unanswered (a crash between two requests of a client)
        self.stop_before: Optional[Callable[[str, str], bool]] = None
        self.requests: list[tuple[str, str]] = []

    def start(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app

        app = DomainDispatcherApplication(create_backend_app)
        outer = self

        class Handler(WSGIRequestHandler):
            def setup(self):
                super().setup()
                with outer._lock:
                    outer._conns.add(self.connection)

            def finish(self):
                with outer._lock:
                    outer._conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_request(self, *args, **kwargs):  # quiet
                pass

        def wsgi(environ, start_response):
            method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
            hook = outer.stop_before
            if hook is not None and hook(method, path):
                outer.stop_before = None
                outer.stop()
                start_response("503 Service Unavailable", [("Content-Length", "0")])
                return [b""]
            outer.requests.append((method, path))
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", self.port, wsgi, threaded=True, request_handler=Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and reset every open connection (requests in flight are dropped)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.socket.close()  # refuse new connections now
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        threading.Thread(target=server.shutdown, daemon=True).start()  # ends serve_forever (not from its thread)

    @property
    def running(self) -> bool:
        return self._server is not None
