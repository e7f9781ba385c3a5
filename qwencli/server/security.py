"""What a request must pass before it reaches an endpoint: Host, body size, API key.

Plain ASGI middleware, so the checks cover every route (including ones FastAPI adds) and
nothing is parsed before they pass.

- Host: when the server is bound to loopback, a browser page from elsewhere can still reach it
  through DNS rebinding (Ollama CVE-2024-28224); its requests carry the attacker's host name, so
  only loopback names are accepted.
- Body: read here up to a limit and replayed to the app; a larger one is a 413.
- Key: `Authorization: Bearer <key>` (or Anthropic's `x-api-key`) on every route but `/health`
  and `/`, compared in constant time (vLLM CVE-2025-59425 leaked keys through timing). The key
  is never logged or echoed.
"""

from __future__ import annotations

import hmac

# The ASGI types are Starlette's own, so our apps type-check where Starlette calls them.
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import LOOPBACK_NAMES, ServerConfig
from .openai_errors import ApiError, unauthorized
from .shapes import error_body

#: `/` answers "Ollama is running" (clients probe it before anything else); it reveals nothing.
OPEN_PATHS = frozenset({"/health", "/"})


async def send_error(send: Send, error: ApiError, body: bytes | None = None) -> None:
    """`error` as a response; `body` when the API asked for has its own error shape."""
    body = error.json_bytes() if body is None else body
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(host_header: str) -> str:
    """`example.com:7936` → `example.com`; `[::1]:7936` → `[::1]`."""
    host_header = host_header.strip().lower()
    if host_header.startswith("["):
        end = host_header.find("]")
        return host_header[: end + 1] if end > 0 else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class HostCheck:
    def __init__(self, app: ASGIApp, *, enabled: bool, extra_names: frozenset[str] = frozenset()):
        self.app = app
        self.enabled = enabled
        self.allowed = LOOPBACK_NAMES | extra_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http":
            host = _header(scope, b"host")
            if host is not None and host_name(host) not in self.allowed:
                refused = ApiError(
                    403,
                    "This server only answers requests addressed to localhost (Host header refused).",
                    code="host_not_allowed",
                )
                await send_error(send, refused, error_body(scope.get("path", ""), refused))
                return
        await self.app(scope, receive, send)


class Guard:
    """Body limit and API key."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int):
        self.app = app
        self._key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    def _authorized(self, scope: Scope) -> bool:
        if self._key is None or scope.get("path") in OPEN_PATHS:
            return True
        given = _header(scope, b"authorization") or ""
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer":
            token = _header(scope, b"x-api-key") or ""  # Anthropic's clients send the key so
        # compare_digest takes time independent of where the first difference is.
        return hmac.compare_digest(token.strip().encode("utf-8", "replace"), self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def refuse(error: ApiError) -> None:
            await send_error(send, error, error_body(path, error))

        if not self._authorized(scope):
            await refuse(unauthorized())
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await refuse(ApiError(400, "Content-Length is not a number."))
                return
            if int(length) > self.max_body_bytes:
                await refuse(_too_large(self.max_body_bytes))
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await refuse(_too_large(self.max_body_bytes))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: waits for the client to go away

        await self.app(scope, replay, send)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"The request body is larger than the server's limit of {limit} bytes.", code="request_too_large"
    )


def add_guards(app, config: ServerConfig) -> None:
    """Host check, CORS, API key and body limit, in that order from the outside: every front door
    (`create_app`, the engine relay) wears the same ones."""
    app.add_middleware(Guard, api_key=config.api_key, max_body_bytes=config.max_body_bytes)
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "HEAD", "DELETE"],
            allow_headers=["authorization", "content-type", "x-api-key", "anthropic-version", "anthropic-beta"],
            max_age=600,
        )
    app.add_middleware(HostCheck, enabled=config.loopback_only)
