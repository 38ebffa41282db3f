"""A real uvicorn server for the app on 127.0.0.1, in a thread of the test process.

Tests that need real HTTP (schemathesis, header handling by the server) use it. The app
instance is its own: its lifespan, and so its engine (asyncpg connections are bound to
one event loop), live in the server's loop, apart from pytest's loop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
