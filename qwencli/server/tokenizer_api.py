"""The model's own tokenizer over HTTP: POST /tokenize, POST /detokenize, GET /tokenizer_info.

So an evaluation client counts and cuts tokens exactly as the server will read them: lm-eval-harness's
`tokenizer_backend=remote` (vLLM's shapes: `prompt`, `add_special_tokens` → `tokens`; `tokens` →
`prompt`; `/tokenizer_info`'s special-token texts) and llama-server's (`content`, `add_special`,
`with_pieces` → `tokens`; `tokens` → `content`). Special-token text (`<|im_end|>`) maps to its
one id. `model` may be left out when the server has one model to mean.

Each call takes a place in the model's line, so keep-alive never unloads it mid-call; the call
itself runs on the engine thread, after whatever the engine is doing (llama.cpp backends only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from ..backends.base import Evaluating
from ..backends.llama_load import BACKEND_NAME as LLAMA_CPP
from .openai_errors import bad_request, queue_full
from .registry import Registry
from .scheduler import QueueFull

T = TypeVar("T")
#: Characters one /tokenize may carry (the body limit applies too); a token covers at least one byte.
MAX_TEXT = 4 << 20
MAX_TOKENS = 1 << 20


class Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TokenizeRequest(Open):
    model: str | None = None
    content: str | None = Field(default=None, max_length=MAX_TEXT)  # llama-server
    prompt: str | None = Field(default=None, max_length=MAX_TEXT)  # vLLM, lm-eval
    add_special: bool | None = None
    add_special_tokens: bool | None = None
    with_pieces: bool = False


class DetokenizeRequest(Open):
    model: str | None = None
    tokens: list[int] = Field(max_length=MAX_TOKENS)


def add_tokenizer_routes(app: FastAPI, registry: Registry) -> None:
    config = registry.config

    def default_model(name: str | None) -> str:
        if name:
            return config.model_for(name)
        named = list(config.startup_models) or [m.name for m in registry.loaded()]
        if len(named) != 1:
            raise bad_request("model: required when the server runs more than one model", param="model")
        return named[0]

    async def on_tokenizer(name: str | None, call: Callable[[Evaluating], T]) -> T:
        try:
            checkout = await registry.checkout(default_model(name))
        except QueueFull as exc:
            raise queue_full(exc.retry_after) from None
        try:
            backend = checkout.model.backend
            if backend.info.backend != LLAMA_CPP:
                raise bad_request(f"the {backend.info.backend} backend has no tokenizer endpoints", param="model")
            return await asyncio.to_thread(call, cast(Evaluating, backend))
        finally:
            checkout.model.scheduler.release(checkout.ticket)

    @app.post("/tokenize", summary="Text → the model's token ids (llama-server's and vLLM's shapes)")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        text = body.content if body.content is not None else body.prompt
        if text is None:
            raise bad_request("content: required (or prompt)", param="content")
        add_special = bool(body.add_special if body.add_special is not None else body.add_special_tokens)

        def run(backend: Evaluating) -> tuple[list[int], list[bytes], int]:
            tokens = backend.tokenize_text(text, add_special=add_special)
            pieces = backend.token_pieces(tokens) if body.with_pieces else []
            return tokens, pieces, backend.tokenizer_info()["model_max_length"]

        tokens, pieces, n_ctx = await on_tokenizer(body.model, run)
        out: list[Any] = tokens
        if body.with_pieces:
            out = [{"id": t, "piece": _piece(p)} for t, p in zip(tokens, pieces)]
        return {"tokens": out, "count": len(tokens), "max_model_len": n_ctx}

    @app.post("/detokenize", summary="Token ids → text (llama-server's and vLLM's shapes)")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        text = await on_tokenizer(body.model, lambda backend: backend.detokenize(body.tokens))
        return {"content": text, "prompt": text}

    @app.get("/tokenizer_info", summary="The tokenizer's special tokens and chat template (vLLM's shape)")
    async def tokenizer_info(model: str | None = None) -> dict[str, Any]:
        return await on_tokenizer(model, lambda backend: backend.tokenizer_info())


def _piece(piece: bytes) -> str | list[int]:
    """llama-server's `piece`: the text, or the bytes when they are not whole UTF-8."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)
