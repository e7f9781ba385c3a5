"""The server's settings, one frozen value. No fastapi here: the CLI builds it before importing
the server."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from ..backends.base import LoadOptions
from .image_urls import ImageUrlPolicy

DEFAULT_KEEP_ALIVE = 300.0
DEFAULT_MAX_QUEUE = 32
#: Big enough for a 128k-token prompt as JSON; anything larger is a mistake or an attack.
DEFAULT_MAX_BODY = 8 << 20
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address) only ever means this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    #: Requests running at once per model (slots of batched decoding).
    parallel: int = 1
    #: Requests waiting per model beyond those running; more get a 429.
    max_queue: int = DEFAULT_MAX_QUEUE
    #: Seconds an idle model stays loaded; None keeps it forever, 0 unloads it when idle.
    keep_alive: float | None = DEFAULT_KEEP_ALIVE
    load: LoadOptions = LoadOptions()
    #: auto, llama or torch: which build of a model name the server loads.
    backend: str = "auto"
    startup_models: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    #: Idle models beyond this many are unloaded, least recently used first.
    max_loaded_models: int = 3
    #: `--alias NAME=MODEL`: names a client sends (claude-…) for models this server runs.
    aliases: tuple[tuple[str, str], ...] = ()
    #: `--allow-pull` / `--allow-delete`: Ollama's /api/pull and /api/delete may change the store.
    allow_pull: bool = False
    allow_delete: bool = False
    #: `--allow-image-urls`: how remote image URLs are fetched; None refuses them (the default).
    image_urls: ImageUrlPolicy | None = None

    def model_for(self, name: str) -> str:
        """The model a request's `name` means, after `--alias`."""
        return next((target for alias, target in self.aliases if alias == name), name)

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.host)
