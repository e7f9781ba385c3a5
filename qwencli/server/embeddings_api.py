"""Embeddings: OpenAI's POST /v1/embeddings, Ollama's POST /api/embed and the legacy /api/embeddings.

A model is loaded for embeddings apart from its chat load (`Registry.checkout_embedder`, the
llama.cpp embedding context of `backends/llama_embed.py`), and each request waits its turn in that
load's line like any generation. Vectors are L2-normalised; `dimensions` keeps the first N and
normalises again (Matryoshka models such as Qwen3-Embedding); `encoding_format: "base64"` is the
float32 little-endian bytes, as OpenAI sends them.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from ..backends.llama_embed import shorten
from .openai_errors import ApiError, bad_request, queue_full
from .registry import Registry
from .scheduler import QueueFull
from .schemas import ModelName

MAX_INPUTS = 2048
MAX_DIMENSIONS = 1 << 16


class Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


Input = str | list[str]


class EmbeddingsRequest(Open):
    model: ModelName
    input: Input
    encoding_format: str = "float"
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS)
    user: str | None = None


class OllamaEmbedRequest(Open):
    model: ModelName
    input: Input
    truncate: bool | None = None
    dimensions: int | None = Field(default=None, ge=1, le=MAX_DIMENSIONS)
    keep_alive: float | str | None = None


class OllamaEmbeddingsRequest(Open):
    model: ModelName
    prompt: str = ""
    keep_alive: float | str | None = None


def _texts(value: Input) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise bad_request("input: at least one text", param="input")
    if len(texts) > MAX_INPUTS:
        raise bad_request(f"input: at most {MAX_INPUTS} texts per request", param="input")
    return texts


def as_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def add_embeddings_routes(app: FastAPI, registry: Registry) -> None:
    config = registry.config

    async def embed(name: str, texts: list[str]) -> tuple[list[list[float]], int, float]:
        """Vectors, tokens, and the seconds spent loading (or waiting for) the model."""
        started = time.perf_counter()
        try:
            checkout = await registry.checkout_embedder(config.model_for(name))
        except QueueFull as exc:  # a full line is a 429 with Retry-After, as for chat
            raise queue_full(exc.retry_after) from None
        scheduler = checkout.model.scheduler
        try:
            await scheduler.wait(checkout.ticket)
            waited = time.perf_counter() - started
            backend: Any = checkout.model.backend
            if not hasattr(backend, "embed"):
                raise ApiError(400, f"{name} cannot compute embeddings on this server")
            vectors, tokens = await asyncio.to_thread(backend.embed, texts)
        finally:
            scheduler.release(checkout.ticket)
        return vectors, tokens, waited

    @app.post("/v1/embeddings", summary="Embeddings (OpenAI)")
    async def embeddings(body: EmbeddingsRequest) -> dict[str, Any]:
        if body.encoding_format not in ("float", "base64"):
            raise bad_request("encoding_format: float or base64", param="encoding_format")
        vectors, tokens, _ = await embed(body.model, _texts(body.input))
        data = []
        for i, vector in enumerate(vectors):
            vector = shorten(vector, body.dimensions)
            value: Any = as_base64(vector) if body.encoding_format == "base64" else vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/api/embed", summary="Embeddings (Ollama)")
    async def api_embed(body: OllamaEmbedRequest) -> dict[str, Any]:
        started = time.perf_counter()
        vectors, tokens, waited = await embed(body.model, _texts(body.input))
        return {
            "model": body.model,
            "embeddings": [shorten(v, body.dimensions) for v in vectors],
            "total_duration": int((time.perf_counter() - started) * 1e9),
            "load_duration": int(waited * 1e9),
            "prompt_eval_count": tokens,
        }

    @app.post("/api/embeddings", summary="One embedding (Ollama, legacy)")
    async def api_embeddings(body: OllamaEmbeddingsRequest) -> dict[str, Any]:
        vectors, _, _ = await embed(body.model, [body.prompt])
        return {"embedding": vectors[0]}
