"""Run a `qwen serve` application in this process, on a real socket, for the server tests.

A real uvicorn on 127.0.0.1 with a free port, in a thread (uvicorn does not install signal
handlers off the main thread); `stop()` is the graceful shutdown SIGTERM would cause.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
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


def chat_models() -> dict[str, Any]:
    """The models most server tests serve: SmolLM2 and the tiny Qwen2/Qwen3 GGUFs."""
    from tests.models import QWEN_TOKENIZER, SMOLLM2, build_tiny, require

    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    return {
        "smollm2": require(SMOLLM2),
        "tiny-qwen2": build_tiny("gguf", "qwen2", tokenizer),
        "tiny-qwen3": build_tiny("gguf", "qwen3", tokenizer),
    }


@contextlib.contextmanager
def serving(models: dict[str, Any], **config: Any) -> Iterator[RunningServer]:
    """`qwen serve`'s app over `models` (SmolLM2 loaded at start, a queue of 8, unless `config`
    says otherwise) on loopback, once /health answers."""
    import httpx

    from qwencli.server.app import create_app
    from qwencli.server.config import ServerConfig
    from qwencli.server.static_source import StaticSource

    app = create_app(ServerConfig(**{"startup_models": ("smollm2",), "max_queue": 8, **config}), StaticSource(models))
    with RunningServer(app) as running:
        assert wait_until(lambda: httpx.get(running.base + "/health").status_code == 200, timeout=60)
        yield running
