"""Real HTTP servers on 127.0.0.1, in threads of the test process.

``serve`` runs the app in uvicorn, for tests that need real HTTP (schemathesis, header
handling by the server). The app instance is its own: its lifespan, and so its engine
(asyncpg connections are bound to one event loop), live in the server's loop, apart
from pytest's loop. ``FakeService`` is the base of the fakes of outside services
(carriers, identity providers) that speak their provider's wire format.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import uvicorn

from app.config import Settings


@contextmanager
def serve(settings: Settings, app_database_url: str) -> Iterator[str]:
    """Serve a fresh app until the block ends; yields its base URL."""
    from app.main import create_app

    app = create_app(settings, app_database_url=app_database_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # port 0: the kernel picks a free one, no races
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class LocalHttpServer:
    """``handler`` served on a free port of 127.0.0.1 from a daemon thread, until stop."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeService:
    """Base of the fakes of outside services: ``start`` serves the request handler
    class ``handler`` returns (bound to this fake) until ``stop``."""

    _http: LocalHttpServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._http is not None, "start the fake first"
        return self._http.url

    def start(self) -> Self:
        self._http = LocalHttpServer(self.handler())
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
