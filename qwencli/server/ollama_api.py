"""Ollama's native API on the same port, so `ollama.Client(host=…)` and the tools built on it
(Open WebUI, aider's `ollama_chat/`, Continue, LangChain's `ChatOllama`) work unchanged.

POST /api/chat and /api/generate stream NDJSON unless `stream: false`; both go through the same
`start()` (registry, queue, cancellation) as /v1/chat/completions, written by `OllamaRenderer`.
GET /api/tags, POST /api/show, GET /api/ps (also `qwen ps`'s own fields), GET /api/version,
HEAD and GET /. Errors are `{"error": "…"}` (`shapes.error_json`). The request bodies and the
jobs they become are `ollama_jobs.py`'s.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .. import __version__
from ..chat import Chunk
from .jobs import Job
from .ollama_jobs import (
    ChatRequest,
    GenerateRequest,
    KeepAlive,
    NameRequest,
    PullRequest,
    chat_job,
    generate_job,
    keep_alive_seconds,
)
from .ollama_models import model_details, show_json
from .openai_errors import ApiError, bad_request
from .registry import Registry
from .shapes import Renderer, dumps
from .streaming import GenerationResponse

Start = Callable[[Job, Renderer | None], Awaitable[GenerationResponse]]

#: The version /api/version reports: Ollama's clients check it for features (thinking, tools).
OLLAMA_VERSION = "0.13.5"
NDJSON_HEADERS = [(b"content-type", b"application/x-ndjson")]


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(int(seconds * 1e9), 0)


class OllamaRenderer:
    """NDJSON objects, one per delta, then the final one with `done: true` and the counters."""

    stream_headers = NDJSON_HEADERS

    def __init__(self, job: Job, *, generate: bool, started: float):
        from .responses import Assembler

        self.job = job
        self.generate = generate
        self.started = started
        self.load_seconds = 0.0
        self.assembler = Assembler(job, job.model)
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._last: Chunk | None = None

    def _deltas(self, chunk: Chunk) -> list[dict[str, Any]]:
        if chunk.finish_reason is not None:
            self._last = chunk
        return self.assembler.feed(chunk)

    @staticmethod
    def _call(delta_call: dict[str, Any]) -> dict[str, Any]:
        function = delta_call["function"]
        try:
            arguments = json.loads(function["arguments"] or "{}")
        except ValueError:
            arguments = {}
        return {
            "id": delta_call["id"],
            "function": {"index": delta_call["index"], "name": function["name"], "arguments": arguments},
        }

    def _object(self, content: str, thinking: str, calls: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": self.job.model, "created_at": now_iso()}
        if self.generate:
            obj["response"] = content
            if thinking:
                obj["thinking"] = thinking
        else:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = calls
            obj["message"] = message
        obj["done"] = done
        if done:
            obj.update(self._final())
        return obj

    def _final(self) -> dict[str, Any]:
        last = self._last or Chunk(finish_reason="stop")
        usage = last.usage
        timings = last.timings
        return {
            "done_reason": "length" if last.finish_reason == "length" else "stop",
            "total_duration": _ns(time.perf_counter() - self.started),
            "load_duration": _ns(self.load_seconds),
            "prompt_eval_count": usage.prompt_tokens if usage else 0,
            "prompt_eval_duration": _ns(timings.prompt_seconds) if timings else 0,
            "eval_count": usage.completion_tokens if usage else 0,
            "eval_duration": _ns(timings.generation_seconds) if timings else 0,
        }

    @staticmethod
    def _split(deltas: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
        content = "".join(d.get("content", "") for d in deltas)
        thinking = "".join(d.get("reasoning_content", "") for d in deltas)
        calls = [OllamaRenderer._call(c) for d in deltas for c in d.get("tool_calls", ())]
        return content, thinking, calls

    def head(self) -> bytes:
        return b""

    def chunk(self, chunk: Chunk) -> bytes:
        content, thinking, calls = self._split(self._deltas(chunk))
        if not (content or thinking or calls):
            return b""
        return dumps(self._object(content, thinking, calls, False)) + b"\n"

    def tail(self) -> bytes:
        return dumps(self._object("", "", [], True)) + b"\n"

    def stream_error(self, error: ApiError) -> bytes:
        return dumps({"error": error.message}) + b"\n"

    def feed(self, chunk: Chunk) -> None:
        content, thinking, calls = self._split(self._deltas(chunk))
        self._content.append(content)
        self._thinking.append(thinking)
        self._calls += calls

    def collected(self) -> bytes:
        return dumps(self._object("".join(self._content), "".join(self._thinking), self._calls, True))

    def error(self, error: ApiError) -> bytes:
        return dumps({"error": error.message})


def add_ollama_routes(app: FastAPI, registry: Registry, start: Start) -> None:
    config = registry.config

    async def generation(job: Job, keep_alive: KeepAlive, *, generate: bool) -> Response:
        started = time.perf_counter()
        seconds = keep_alive_seconds(keep_alive)
        renderer = OllamaRenderer(job, generate=generate, started=started)
        empty = not (job.prompt if job.kind == "completion" else any(m.content or m.images for m in job.messages))
        if empty and (generate or not job.messages):
            return await load_or_unload(job.model, seconds, generate=generate)
        response = await start(job, renderer)
        renderer.load_seconds = time.perf_counter() - started
        if job.options.think and not response.checkout.model.info.supports_thinking:
            response.checkout.model.scheduler.release(response.checkout.ticket)
            raise bad_request(f"{job.model!r} does not support thinking")  # as Ollama answers
        if seconds != "default":
            registry.set_keep_alive(response.checkout.model, seconds)
        return response

    async def load_or_unload(name: str, seconds: float | None | Literal["default"], *, generate: bool) -> Response:
        """An empty prompt loads the model (or with keep_alive 0 unloads it), as Ollama does."""
        name = config.model_for(name)
        obj: dict[str, Any] = {"model": name, "created_at": now_iso()}
        if generate:
            obj["response"] = ""
        else:
            obj["message"] = {"role": "assistant", "content": ""}
        if seconds == 0:
            await registry.resolve(name)  # 404 when unknown
            await registry.unload(name)
            return JSONResponse({**obj, "done": True, "done_reason": "unload"})
        checkout = await registry.checkout(name)
        checkout.model.scheduler.release(checkout.ticket)
        if seconds != "default":
            registry.set_keep_alive(checkout.model, seconds)
        return JSONResponse({**obj, "done": True, "done_reason": "load"})

    @app.post("/api/chat", response_model=None, summary="Chat (Ollama)")
    async def api_chat(body: ChatRequest) -> Response:
        return await generation(chat_job(body), body.keep_alive, generate=False)

    @app.post("/api/generate", response_model=None, summary="Generate (Ollama)")
    async def api_generate(body: GenerateRequest) -> Response:
        return await generation(generate_job(body), body.keep_alive, generate=True)

    @app.get("/api/tags", summary="Models this server can run (Ollama)")
    async def api_tags() -> dict[str, Any]:
        names = await asyncio.to_thread(registry.names)
        models = []
        for name in names:
            try:
                resolved = await registry.resolve(name)
            except ApiError:
                continue
            models.append(await asyncio.to_thread(model_details, name, resolved))
        return {"models": models}

    @app.post("/api/show", summary="One model's details, template and capabilities (Ollama)")
    async def api_show(body: NameRequest) -> dict[str, Any]:
        name = config.model_for(body.model_name())
        resolved = await registry.resolve(name)
        return await asyncio.to_thread(show_json, name, resolved)

    @app.get("/api/ps", summary="Loaded models (Ollama's shape, with qwen ps's fields)")
    async def api_ps() -> dict[str, Any]:
        models = []
        for m in registry.loaded():
            until = registry.until(m)
            expires = _iso(until) if until is not None else "0001-01-01T00:00:00Z"
            details = await asyncio.to_thread(model_details, m.name, m.resolved)
            models.append(
                {
                    **details,
                    "expires_at": expires,
                    "size": m.memory_bytes,
                    "size_vram": 0 if m.info.backend != "torch" else m.memory_bytes,
                    "context_length": m.info.context_length,
                    # qwen ps's own fields
                    "backend": m.info.backend,
                    "context": m.info.context_length,
                    "memory": m.memory_bytes,
                    "until": _iso(until) if until is not None else None,
                    "running": m.scheduler.running,
                    "waiting": m.scheduler.waiting,
                    "quantization": m.info.quantization,
                    "parallel": m.scheduler.slots,
                }
            )
        for name in registry.loading():
            models.append(
                {
                    "name": name,
                    "model": name,
                    "backend": None,
                    "context": None,
                    "memory": None,
                    "until": None,
                    "running": 0,
                    "waiting": 0,
                    "loading": True,
                }
            )
        return {"models": models}

    @app.get("/api/version", summary="The Ollama API version this server speaks")
    async def api_version() -> dict[str, str]:
        return {"version": OLLAMA_VERSION, "qwencli": __version__}

    @app.get("/", summary="'Ollama is running', as Ollama answers")
    async def root() -> PlainTextResponse:
        return PlainTextResponse("Ollama is running")

    @app.head("/", summary="200, as Ollama answers (clients probe it)")
    async def root_head() -> PlainTextResponse:
        return PlainTextResponse("Ollama is running")

    @app.post("/api/pull", response_model=None, summary="Pull a model (only with qwen serve --allow-pull)")
    async def api_pull(body: PullRequest) -> Response:
        name = body.model_name()
        if not config.allow_pull:
            raise ApiError(
                403,
                f"pulling over the API is off on this server: run `qwen pull {name}` on the server machine, "
                "or start it with `qwen serve --allow-pull`",
            )
        from .ollama_pull import pull_response

        return await pull_response(name, stream=body.stream)

    @app.delete("/api/delete", response_model=None, summary="Delete a model (only with qwen serve --allow-delete)")
    async def api_delete(body: NameRequest) -> Response:
        name = body.model_name()
        if not config.allow_delete:
            raise ApiError(
                403,
                f"deleting over the API is off on this server: run `qwen rm {name}` on the server machine, "
                "or start it with `qwen serve --allow-delete`",
            )
        from .ollama_pull import delete_model

        await registry.unload(name)
        await asyncio.to_thread(delete_model, name)
        return JSONResponse({})


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")
