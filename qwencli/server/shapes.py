"""One generation, many wire shapes: how a reply and its errors are written for each API.

`GenerationResponse` (streaming.py) drives every generation the same way — queue, cancel on
disconnect, errors before the first byte as HTTP errors — and asks a `Renderer` only how to
write it: OpenAI's chunks (`OpenAIRenderer`, the default), Ollama's NDJSON, Anthropic's events.
Each renderer builds on the OpenAI `Assembler`'s deltas (content, reasoning, tool calls), so
the tool-call parsing and the thinking split are the same for every shape.

`error_body()` picks the error shape by path, so a failure anywhere (Host check, API key, body
limit, validation, a model that is not there) reaches each client in its own API's shape.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..chat import Chunk
from .jobs import Job
from .openai_errors import ApiError
from .responses import Assembler

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

#: Anthropic's error types by HTTP status (docs.anthropic.com "Errors").
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def pieces(deltas: list[dict[str, Any]], names: tuple[str, str, str]) -> list[tuple[str, Any]]:
    """Assembled OpenAI-style deltas as `(kind, value)` in order: reasoning, text and each tool
    call, under the API's own `names` for those three (Anthropic: thinking/text/tool_use)."""
    reasoning, text, call = names
    out: list[tuple[str, Any]] = []
    for d in deltas:
        if d.get("reasoning_content"):
            out.append((reasoning, d["reasoning_content"]))
        if d.get("content"):
            out.append((text, d["content"]))
        for tool_call in d.get("tool_calls", ()):
            out.append((call, tool_call))
    return out


def shape_of(path: str) -> str:
    """Which API a path belongs to: "ollama", "anthropic" or "openai"."""
    if path.startswith("/api/") or path == "/api":
        return "ollama"
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai"


def error_json(shape: str, error: ApiError) -> dict[str, Any]:
    if shape == "ollama":
        return {"error": error.message}
    if shape == "anthropic":
        kind = ANTHROPIC_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}
    return error.body()


def error_body(path: str, error: ApiError) -> bytes:
    return json.dumps(error_json(shape_of(path), error)).encode()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def sse(obj: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + dumps(obj) + b"\n\n"


class Renderer(Protocol):
    """How one generation is written. Streaming: `head`, `chunk` for each backend chunk, then
    `tail` (or `stream_error`); collected: `feed` each chunk, then `collected`."""

    stream_headers: list[tuple[bytes, bytes]]

    def head(self) -> bytes: ...
    def chunk(self, chunk: Chunk) -> bytes: ...
    def tail(self) -> bytes: ...
    def stream_error(self, error: ApiError) -> bytes: ...
    def feed(self, chunk: Chunk) -> None: ...
    def collected(self) -> bytes: ...
    def error(self, error: ApiError) -> bytes: ...


class OpenAIRenderer:
    stream_headers = SSE_HEADERS

    def __init__(self, job: Job):
        self.assembler = Assembler(job, job.model)
        self._deltas: list[dict[str, Any]] = []

    def head(self) -> bytes:
        return b"".join(sse(o) for o in self.assembler.stream_head())

    def chunk(self, chunk: Chunk) -> bytes:
        return b"".join(sse(o) for o in self.assembler.stream_chunks(chunk))

    def tail(self) -> bytes:
        return b"".join(sse(o) for o in self.assembler.stream_tail()) + b"data: [DONE]\n\n"

    def stream_error(self, error: ApiError) -> bytes:
        return sse(error.body()) + b"data: [DONE]\n\n"

    def feed(self, chunk: Chunk) -> None:
        self._deltas += self.assembler.feed(chunk)

    def collected(self) -> bytes:
        return json.dumps(self.assembler.collected(self._deltas), ensure_ascii=False).encode()

    def error(self, error: ApiError) -> bytes:
        return error.json_bytes()
