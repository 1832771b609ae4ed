"""A web app (the unsubscribe endpoint, its sign-up and manage pages) under a real uvicorn on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from smtp_server import free_port


@contextmanager
def running(app: object, port: int | None = None) -> Iterator[str]:
    """The app served in a thread on `port` (a free one when None); yields its base URL."""
    port = port or free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)
