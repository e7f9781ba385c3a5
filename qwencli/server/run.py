"""Run the server: bind, print the address, serve until SIGTERM/Ctrl-C, shut down gracefully.

The socket is bound here rather than by uvicorn so that `--port 0` can print the port it got
and "address in use" is one clear line. On SIGTERM or Ctrl-C uvicorn stops accepting, lets
requests in flight finish (up to `GRACE_SECONDS`), then the app unloads its models; a second
Ctrl-C cuts the wait short.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import sys
import threading

from ..errors import UsageError
from ..settings import DEFAULT_PORT
from .config import ServerConfig

GRACE_SECONDS = 30

log = logging.getLogger("qwencli.server")


def log_config(verbose: bool) -> dict:
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    quiet = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(message)s", "datefmt": "%H:%M:%S"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": quiet,
            "uvicorn.error": {**quiet, "level": "INFO"},
            "uvicorn.access": {**quiet, "level": "INFO" if verbose else "WARNING"},
            "qwencli.server": quiet,
        },
    }


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a UsageError that says why not in one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise UsageError(f"cannot listen on {host!r}: no such address or host name") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart while old connections linger
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is already in use (another qwen serve?)",
                "choose another with --port, or --port 0 for any free one",
            ) from None
        if exc.errno == errno.EACCES:
            raise UsageError(f"not allowed to listen on {host}:{port}", "ports below 1024 need privileges") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def run_server(config: ServerConfig, models: list[str], *, port: int = DEFAULT_PORT, verbose: bool = False) -> int:
    """Serve until told to stop; the process exit status."""
    import uvicorn

    from .. import settings
    from .app import create_app
    from .probe import Prober
    from .store_source import StoreSource

    source = StoreSource(models, backend=config.backend)  # unknown start-up models fail here, before anything listens
    config = _with_startup(config, source.startup_ids)
    sock = bind(config.host, port)
    status = {"code": 0}

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after its graceful shutdown, so SIGTERM would end the
            # process with status 143; a graceful stop is a success here.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    server: Server

    def on_fatal(message: str) -> None:
        status["code"] = 1
        server.should_exit = True

    app = create_app(config, source, prober=Prober(settings.load().home / "probe-cache.json"), on_fatal=on_fatal)
    server = Server(
        uvicorn.Config(
            app,
            log_config=log_config(verbose),
            http="h11",
            lifespan="on",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
        )
    )
    bound_port = sock.getsockname()[1]
    url_host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"http://{url_host}:{bound_port}/v1", flush=True)
    _announce(config, source.startup_ids, bound_port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return status["code"] or (1 if not server.started else 0)


def _with_startup(config: ServerConfig, ids: list[str]) -> ServerConfig:
    import dataclasses

    return dataclasses.replace(config, startup_models=tuple(ids))


def _announce(config: ServerConfig, ids: list[str], port: int) -> None:
    from ..console import notice

    parts = [f"qwen serve on {config.host}:{port} (OpenAI API under /v1)"]
    parts.append(f"loading {', '.join(ids)}" if ids else "models load on first request")
    parts.append("API key required" if config.api_key else "no API key")
    notice(" · ".join(parts))
    sys.stderr.flush()
