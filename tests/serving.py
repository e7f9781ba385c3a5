"""Run a `qwen serve` application in this process, on a real socket, for the server tests.

A real uvicorn on 127.0.0.1 with a free port, in a thread (uvicorn does not install signal
handlers off the main thread); `stop()` is the graceful shutdown SIGTERM would cause.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from qwencli.server.run import bind

START_TIMEOUT = 60.0


class RunningServer:
    def __init__(self, app: Any, host: str = "127.0.0.1"):
        self.app = app
        self.sock = bind(host, 0)
        self.port = self.sock.getsockname()[1]
        self.base = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", http="h11",
                                                    timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="test uvicorn")

    def start(self) -> "RunningServer":
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    @property
    def registry(self):
        return self.app.state.registry

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
        assert not self.thread.is_alive(), "the test server did not stop"

    def __enter__(self) -> "RunningServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
