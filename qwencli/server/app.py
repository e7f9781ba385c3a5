"""`create_app()`: the FastAPI application, closing over its own state (no module globals).

    app = create_app(ServerConfig(...), source)            # tests: StaticSource({...}), a fake loader
    uvicorn.Server(uvicorn.Config(app, ...)).serve()

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models(/{id}), GET /health,
GET /openapi.json; Ollama's API (`ollama_api.py`: /api/chat, /api/generate, /api/tags, /api/show,
/api/ps — also what `qwen ps` reads — /api/version, /) and Anthropic's Messages
(`anthropic_api.py`), OpenAI's Responses (`responses_api.py`), embeddings (`embeddings_api.py`),
rerank (`rerank_api.py`: /v1/rerank and llama-server's aliases).
the tokenizer for evaluation clients (`tokenizer_api.py`: /tokenize, /detokenize, /tokenizer_info).
Every error a client sees has its API's shape (`shapes.py`); validation failures are 400s (not
FastAPI's 422).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import QwenError
from .anthropic_api import add_anthropic_routes
from .config import ServerConfig
from .embeddings_api import add_embeddings_routes
from .jobs import Job, built, chat_job, completion_job, for_model
from .ollama_api import add_ollama_routes
from .openai_errors import ApiError, as_api_error, bad_request, queue_full
from .probe import Prober
from .registry import Loader, ModelSource, Registry, default_loader
from .rerank_api import add_rerank_routes
from .responses_api import add_responses_routes
from .scheduler import QueueFull
from .schemas import ChatCompletionRequest, CompletionRequest
from .security import add_guards
from .shapes import Renderer, error_json, shape_of
from .streaming import GenerationResponse
from .tokenizer_api import add_tokenizer_routes

log = logging.getLogger("qwencli.server")


def create_app(
    config: ServerConfig,
    source: ModelSource,
    *,
    loader: Loader = default_loader,
    prober: Prober | None = None,
    on_fatal: Callable[[str], None] | None = None,
    memory: Callable[[], int] | None = None,
) -> FastAPI:
    """The application. `source` names the models; `loader` loads one (default: the real
    backends); `prober` checks a file in a child process before it is loaded in-process;
    `on_fatal` is told when a model named at start cannot be loaded (the CLI then exits)."""
    registry = Registry(config, source, loader, prober, memory=memory)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        background = [asyncio.create_task(registry.run_keep_alive())]
        if config.startup_models:
            preload = asyncio.create_task(registry.preload())
            preload.add_done_callback(lambda task: _report_preload(task, on_fatal))
            background.append(preload)
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await registry.close()

    app = FastAPI(
        title="qwencli",
        version=__version__,
        description="OpenAI-compatible API for local Qwen models (qwen serve).",
        docs_url=None,  # the interactive docs load scripts from a CDN; /openapi.json is enough
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.config = config
    _install_error_handlers(app)

    async def start(job: Job, renderer: Renderer | None = None) -> GenerationResponse:
        """Every generation, whatever its API: a place in the model's line, then the response."""
        job = dataclasses.replace(job, model=config.model_for(job.model))
        try:
            checkout = await registry.checkout(job.model, num_ctx=job.num_ctx)
        except QueueFull as exc:
            raise queue_full(exc.retry_after) from None
        try:
            job = for_model(job, checkout.model.info)
        except ApiError:
            checkout.model.scheduler.release(checkout.ticket)
            raise
        return GenerationResponse(registry, checkout, job, renderer)

    @app.post("/v1/chat/completions", response_model=None, summary="Chat completion (OpenAI)")
    async def chat_completions(body: ChatCompletionRequest) -> GenerationResponse:
        return await start(await built(chat_job, body, config.image_urls))

    @app.post("/v1/completions", response_model=None, summary="Text completion (OpenAI, legacy)")
    async def completions(body: CompletionRequest) -> GenerationResponse:
        return await start(completion_job(body))

    @app.get("/v1/models", summary="Models this server can run")
    async def list_models() -> dict[str, Any]:
        names = await asyncio.to_thread(registry.names)
        return {"object": "list", "data": [_model_json(name) for name in names]}

    @app.get("/v1/models/{model_id:path}", summary="One model")
    async def get_model(model_id: str) -> dict[str, Any]:
        await registry.resolve(model_id)  # 404 when unknown; never loads
        return _model_json(model_id)

    @app.get("/health", summary="200 when ready, 503 while the models named at start load")
    async def health() -> JSONResponse:
        if registry.startup_error is not None:
            return JSONResponse({"status": "error", "error": registry.startup_error}, status_code=503)
        if not registry.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    add_ollama_routes(app, registry, start)
    add_anthropic_routes(app, registry, start)
    add_responses_routes(app, registry, start)
    add_embeddings_routes(app, registry)
    add_rerank_routes(app, registry)
    add_tokenizer_routes(app, registry)

    add_guards(app, config)
    return app


def _model_json(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "local"}


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")


def _report_preload(task: asyncio.Task, on_fatal: Callable[[str], None] | None) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        log.info("ready")
        return
    message = as_api_error(exc).message
    log.error("could not load a model named at start: %s", message)
    if on_fatal is not None:
        on_fatal(message)


def _error_response(error: ApiError, request: Request) -> JSONResponse:
    """`error` in the shape of the API the request was for (OpenAI, Ollama, Anthropic)."""
    body = error_json(shape_of(request.url.path), error)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _param(loc: tuple) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """FastAPI/pydantic errors → one 400 naming the fields."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return bad_request("The request body is not valid JSON.")
    unknown = [_param(e["loc"]) for e in errors if e.get("type") == "extra_forbidden"]
    if unknown:
        return bad_request(
            f"Unsupported field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            param=unknown[0],
            code="unsupported_field",
        )
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = _param(tuple(first.get("loc", ())))
    if not param:
        return bad_request(f"The request body must be a JSON object: {first.get('msg')}")
    if first.get("type") == "missing":
        return bad_request(f"{param}: required", param=param)
    return bad_request(f"{param}: {first.get('msg')}", param=param)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(validation_error(list(exc.errors())), request)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = "No such endpoint." if exc.status_code == 404 else str(exc.detail)
        return _error_response(ApiError(exc.status_code, message, code=code), request)

    @app.exception_handler(QwenError)
    async def on_qwen_error(request: Request, exc: QwenError) -> JSONResponse:
        return _error_response(as_api_error(exc), request)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(as_api_error(exc), request)
