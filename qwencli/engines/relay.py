"""qwencli's front door before an engine: /v1/* relayed to the engine on a loopback port, byte for byte
as it arrives (SSE streams are not buffered), behind the same Host check, CORS, API key and body limit
as `qwen serve` (`server.security.add_guards`). The engine's own answers, errors included, pass through
unchanged (vLLM and SGLang already answer in OpenAI's shape); an engine that does not answer is a 502 in
that shape. /health says whether the engine is ready; /api/ps names the model, so `qwen ps` works.

The engine listens with a key only the relay knows (vLLM's `VLLM_API_KEY`), so another user of this
machine cannot go around the front door's key through the loopback port.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..server.config import ServerConfig
from ..server.openai_errors import ApiError
from ..server.security import add_guards

#: Request headers worth passing on; the client's Authorization is ours, not the engine's.
FORWARDED = ("content-type", "accept", "accept-encoding", "user-agent", "openai-beta")
#: Per-hop headers (RFC 9110 §7.6.1): each side of the relay has its own connection.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "server", "date"})


def create_relay_app(
    config: ServerConfig, upstream: str, *, model: str, engine: str, context: int | None, upstream_key: str | None
) -> Starlette:
    clients: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        # No read timeout: a long generation may pause between tokens; connecting must be quick.
        timeout = httpx.Timeout(None, connect=5.0)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=upstream, timeout=timeout, limits=limits) as client:
            clients["engine"] = client
            yield

    async def relay(request: Request) -> Response:
        client = clients["engine"]
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        if upstream_key:
            headers["authorization"] = f"Bearer {upstream_key}"
        outgoing = client.build_request(
            request.method, request.url.path, params=request.url.query, content=await request.body(), headers=headers
        )
        try:
            answer = await client.send(outgoing, stream=True)
        except httpx.HTTPError:
            return _error(ApiError(502, f"The {engine} engine behind this server is not answering.",
                                   type="server_error", code="engine_unavailable"))  # fmt: skip

        async def passed_on():
            # A client that goes away cancels this mid-stream: closing the engine's response then tells
            # the engine to abort the generation, instead of computing tokens nobody reads.
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()

        return StreamingResponse(
            passed_on(),
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP},
        )

    async def health(request: Request) -> Response:
        try:
            answer = await clients["engine"].get("/health", timeout=5.0)
            ready = answer.status_code == 200
        except httpx.HTTPError:
            ready = False
        return JSONResponse({"status": "ok" if ready else "error", "engine": engine}, status_code=200 if ready else 503)

    async def ps(request: Request) -> Response:
        entry: dict[str, Any] = {"name": model, "model": model, "backend": engine, "context": context or 0,
                                 "memory": 0, "until": None}  # fmt: skip
        return JSONResponse({"models": [entry]})

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/api/ps", ps, methods=["GET"]),
            Route("/v1/{rest:path}", relay, methods=methods),
        ],
        lifespan=lifespan,
    )
    add_guards(app, config)
    return app


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
