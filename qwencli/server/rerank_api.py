"""Rerank: POST /v1/rerank in the Jina / llama-server shape, and llama-server's aliases /rerank,
/v1/reranking, /reranking.

    {"model": "qwen3-reranker-0.6b", "query": "…", "documents": ["…", "…"], "top_n": 2}
    → {"object": "list", "model": …, "results": [{"index": 1, "relevance_score": 0.93}, …], "usage": …}

Results are sorted by score, best first, and cut to `top_n`; `return_documents` adds each
document's text as Jina does. The model is loaded like an embedding model (`checkout_embedder`:
llama.cpp's embedding context with the file's own pooling); only a rank-pooled file (a reranker
converted by llama.cpp, e.g. Qwen3-Reranker) can score, anything else is a clear 400. The request
waits its turn in that load's line like any generation, and a client that disconnects stops
the scoring between two documents.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ..backends.llama_rerank import Stopped
from .embeddings_api import MAX_INPUTS
from .openai_errors import ApiError, bad_request, queue_full
from .registry import Registry
from .scheduler import QueueFull
from .schemas import ModelName

PATHS = ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking")
#: How often a running rerank looks whether its client is still there.
DISCONNECT_POLL_SECONDS = 0.1


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: ModelName
    query: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False


def _check(body: RerankRequest) -> None:
    if not body.documents:
        raise bad_request("documents: at least one document", param="documents")
    if len(body.documents) > MAX_INPUTS:
        raise bad_request(f"documents: at most {MAX_INPUTS} per request", param="documents")


def ranked(scores: list[float], documents: list[str], top_n: int | None, with_text: bool) -> list[dict[str, Any]]:
    """Best first; equal scores keep the documents' order (a stable sort)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: top_n or len(scores)]
    results: list[dict[str, Any]] = []
    for i in order:
        result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if with_text:
            result["document"] = {"text": documents[i]}
        results.append(result)
    return results


def add_rerank_routes(app: FastAPI, registry: Registry) -> None:
    config = registry.config

    async def score(request: Request, name: str, query: str, documents: list[str]) -> tuple[list[float], int]:
        try:
            checkout = await registry.checkout_embedder(config.model_for(name))
        except QueueFull as exc:
            raise queue_full(exc.retry_after) from None
        scheduler = checkout.model.scheduler
        gone = threading.Event()
        watcher = asyncio.create_task(_watch(request, gone))
        try:
            await _unless_gone(scheduler.wait(checkout.ticket), gone)
            backend: Any = checkout.model.backend
            if not hasattr(backend, "rerank"):
                raise ApiError(400, f"{name} cannot rerank on this server", param="model")
            try:
                return await asyncio.to_thread(backend.rerank, query, documents, gone.is_set)
            except Stopped:
                raise ApiError(499, "client closed the request") from None
        finally:
            watcher.cancel()
            scheduler.release(checkout.ticket)

    async def rerank(request: Request, body: RerankRequest) -> dict[str, Any]:
        _check(body)
        scores, tokens = await score(request, body.model, body.query, body.documents)
        return {
            "object": "list",
            "model": body.model,
            "results": ranked(scores, body.documents, body.top_n, body.return_documents),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    for path in PATHS:
        app.post(
            path,
            summary="Rerank documents against a query (Jina / llama-server)",
            operation_id=f"rerank{path.replace('/', '_')}",
        )(rerank)


async def _watch(request: Request, gone: threading.Event) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
    gone.set()


async def _unless_gone(awaitable: Any, gone: threading.Event) -> None:
    """`awaitable` (a place in line), given up as soon as the client is gone."""
    task = asyncio.ensure_future(awaitable)
    while not task.done():
        if gone.is_set():
            task.cancel()
            raise ApiError(499, "client closed the request")
        await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
    task.result()
