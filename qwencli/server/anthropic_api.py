"""Anthropic's Messages API, so the `anthropic` SDK and Claude Code (`ANTHROPIC_BASE_URL`) work.

POST /v1/messages (streamed as Anthropic's events, or one message) and /v1/messages/count_tokens.
A request becomes the same `Job` as a chat completion and goes through the same `start()`;
`AnthropicRenderer` writes the Assembler's deltas as thinking, text and tool_use blocks. Errors are
`{"type": "error", "error": {"type", "message"}}` (`shapes.error_json`). `x-api-key` is accepted
as well as `Authorization: Bearer` (security.py); `--alias` maps the claude-… names a client
sends to a served model (`ServerConfig.model_for`).

`thinking.budget_tokens` (≥ 1024, below `max_tokens`, as Anthropic requires) is enforced by the
backend: once the reasoning has taken that many tokens the end of thinking is forced and the
answer follows (backends/thinking_budget.py). A reply ended by one of `stop_sequences` says
`stop_reason: "stop_sequence"` and which one. A stream's `message_start` carries the prompt's
true `input_tokens`, counted with the model's own template and tokenizer before it starts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from ..chat import Chunk, GenerationOptions, Image, Message, ToolCall
from .image_urls import ImageUrlPolicy
from .jobs import Job, ToolMode, built, inline_image, remote_image
from .openai_errors import ApiError, bad_request
from .registry import Registry
from .responses import Assembler
from .schemas import MAX_IMAGES, MAX_MESSAGES, MAX_STOPS, MAX_TOOLS, MaxTokens, ModelName, StopString, TopK
from .shapes import SSE_HEADERS, Renderer, dumps, error_json, pieces, sse
from .streaming import GenerationResponse

Start = Callable[[Job, Renderer | None], Awaitable[GenerationResponse]]
#: The opaque signature a thinking block carries; clients send it back, and it is ignored.
SIGNATURE = "qwencli"


_KINDS = ("thinking", "text", "tool_use")  # content block types, for shapes.pieces


class Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Block(Open):
    type: str
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[dict[str, Any]] | None = None
    is_error: bool | None = None
    source: dict[str, Any] | None = None  # an image block's {"type": "base64", "media_type", "data"}


class AnthropicMessage(Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(Open):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    type: str | None = None


class ToolChoice(Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(Open):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1)


class CountRequest(Open):
    model: ModelName
    messages: list[AnthropicMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | list[Block] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None


class MessagesRequest(CountRequest):
    max_tokens: MaxTokens = Field(ge=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: TopK = None
    stop_sequences: list[StopString] | None = Field(default=None, max_length=MAX_STOPS)
    metadata: dict[str, Any] | None = None


def _text(content: str | list[dict[str, Any]] | list[Block] | None, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else part.type
        text = part.get("text") if isinstance(part, dict) else part.text
        if kind != "text" or not isinstance(text, str):
            raise bad_request(f"{where}: only text blocks are supported here, not {kind!r}")
        texts.append(text)
    return "".join(texts)


def to_messages(req: CountRequest, urls: ImageUrlPolicy | None = None) -> tuple[Message, ...]:
    out: list[Message] = []
    if req.system:
        out.append(Message("system", _text(req.system, "system")))
    for i, m in enumerate(req.messages):
        where = f"messages[{i}].content"
        if isinstance(m.content, str):
            out.append(Message(m.role, m.content))
            continue
        texts: list[str] = []
        thinking: list[str] = []
        calls: list[ToolCall] = []
        images: list[Image] = []
        for j, block in enumerate(m.content):
            if block.type == "text":
                texts.append(block.text or "")
            elif block.type == "image" and m.role == "user":
                if len(images) == MAX_IMAGES:
                    raise bad_request(f"{where}: at most {MAX_IMAGES} images in one message")
                images.append(_image(block, f"{where}[{j}].source", urls))
            elif block.type == "tool_result" and m.role == "user":
                if not block.tool_use_id:
                    raise bad_request(f"{where}[{j}].tool_use_id: required")
                result = _text(block.content, f"{where}[{j}].content")
                out.append(Message("tool", result, tool_call_id=block.tool_use_id))
            elif block.type == "tool_use" and m.role == "assistant":
                if not block.id or not block.name:
                    raise bad_request(f"{where}[{j}]: a tool_use block needs id and name")
                calls.append(ToolCall(block.id, block.name, json.dumps(block.input or {}, ensure_ascii=False)))
            elif block.type == "thinking" and m.role == "assistant":
                thinking.append(block.thinking or "")
            elif block.type == "redacted_thinking":
                continue
            else:
                raise bad_request(f"{where}[{j}]: {block.type!r} blocks are not supported in a {m.role} message")
        if texts or calls or images or m.role == "assistant":
            out.append(
                Message(
                    m.role,
                    "".join(texts),
                    reasoning="".join(thinking) or None,
                    tool_calls=tuple(calls),
                    images=tuple(images),
                )
            )
    return tuple(out)


#: The media types Anthropic's API takes for an image block.
MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _image(block: Block, where: str, urls: ImageUrlPolicy | None) -> Image:
    """An image block's base64 source (or url source, fetched under `urls`), through the same
    checks as every image (images.py). The bytes decide the format; a base64 source's
    `media_type` must still be one Anthropic's API takes."""
    source = block.source or {}
    kind = source.get("type")
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise bad_request(f"{where}.url: required")
        return remote_image(url, f"{where}.url", urls)
    if kind != "base64":
        raise bad_request(f"{where}.type: an image source is base64 or url, not {kind!r}")
    if source.get("media_type") not in MEDIA_TYPES:
        raise bad_request(f"{where}.media_type: one of {', '.join(MEDIA_TYPES)}, not {source.get('media_type')!r}")
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise bad_request(f"{where}.data: required (the image, base64)")
    return inline_image(data, f"{where}.data")


def _tools(req: CountRequest) -> tuple[tuple[dict, ...] | None, ToolMode, tuple[dict, ...], bool, bool]:
    """(tools for the template, mode, forced tools, several calls, first call only)."""
    tools: tuple[dict[str, Any], ...] = tuple(
        {
            "type": "function",
            "function": {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "parameters": t.input_schema,
            },
        }
        for t in req.tools or ()
    )
    choice = req.tool_choice or ToolChoice(type="auto")
    single = bool(choice.disable_parallel_tool_use)
    if not tools:
        if choice.type in ("any", "tool"):
            raise bad_request(f"tool_choice: {choice.type!r} needs tools")
        return None, "off", (), False, False
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise bad_request("tools: names must be unique")
    if choice.type == "none":
        return None, "off", (), False, False
    if choice.type == "auto":
        return tools, "auto", (), False, single
    if choice.type == "tool":
        forced = tuple(t for t in tools if t["function"]["name"] == choice.name)
        if not forced:
            raise bad_request(f"tool_choice.name: no tool named {choice.name!r}")
        return tools, "forced", forced, False, single
    return tools, "forced", tools, not single, single


def _think(req: CountRequest, max_tokens: int | None) -> bool:
    thinking = req.thinking
    if thinking is None or thinking.type == "disabled":
        return False
    if thinking.type == "enabled":
        budget = thinking.budget_tokens
        if budget is None or budget < 1024:
            raise bad_request("thinking.budget_tokens: required, and at least 1024")
        if max_tokens is not None and budget >= max_tokens:
            raise bad_request("thinking.budget_tokens: must be less than max_tokens")
    return True


def _budget(req: CountRequest) -> int | None:
    """The reasoning's token budget (`thinking.type: enabled`); "adaptive" has none."""
    thinking = req.thinking
    return thinking.budget_tokens if thinking is not None and thinking.type == "enabled" else None


def messages_job(req: MessagesRequest, urls: ImageUrlPolicy | None = None) -> Job:
    tools, mode, forced, several, single = _tools(req)
    options = GenerationOptions(
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        max_tokens=req.max_tokens,
        stop=tuple(req.stop_sequences or ()),
        think=_think(req, req.max_tokens),
        thinking_budget=_budget(req),
    )
    return Job(
        model=req.model,
        kind="chat",
        options=options,
        stream=req.stream,
        include_usage=False,
        messages=to_messages(req, urls),
        tools=tools,
        tool_mode=mode,
        first_call_only=single,
        forced_tools=forced,
        several_calls=several,
    )


def _stop_reason(finish: str | None) -> str:
    return {"length": "max_tokens", "tool_calls": "tool_use"}.get(finish or "stop", "end_turn")


def _stopped(finish: str | None, last: Chunk | None) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence): "stop_sequence" and which one, when a stop string ended it."""
    sequence = last.stop_sequence if last is not None else None
    if sequence is not None and finish in (None, "stop"):
        return "stop_sequence", sequence
    return _stop_reason(finish), None


class AnthropicRenderer:
    """Blocks from deltas: consecutive reasoning is one thinking block, text one text block, each
    call one tool_use block (its whole input in one `input_json_delta`)."""

    stream_headers = SSE_HEADERS

    def __init__(self, job: Job):
        self.job = job
        self.model = job.model
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.assembler = Assembler(job, job.model)
        self._open: str | None = None  # the kind of the block being streamed
        self._index = -1
        self._blocks: list[dict[str, Any]] = []  # collected
        self._last: Chunk | None = None
        #: The prompt's tokens, counted before the stream starts (for `message_start`).
        self.input_tokens = 0

    def _feed(self, chunk: Chunk) -> list[dict[str, Any]]:
        if chunk.finish_reason is not None:
            self._last = chunk
        return self.assembler.feed(chunk)

    @staticmethod
    def _input(call: dict[str, Any]) -> dict[str, Any]:
        try:
            value = json.loads(call["function"]["arguments"] or "{}")
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def _usage(self) -> dict[str, int]:
        usage = self._last.usage if self._last is not None else None
        return {
            "input_tokens": usage.prompt_tokens if usage else 0,
            "output_tokens": usage.completion_tokens if usage else 0,
        }

    # -- streaming -----------------------------------------------------------------------

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        out = b""
        if self._open == "thinking":
            delta = {"type": "signature_delta", "signature": SIGNATURE}
            out += sse({"type": "content_block_delta", "index": self._index, "delta": delta}, "content_block_delta")
        self._open = None
        return out + sse({"type": "content_block_stop", "index": self._index}, "content_block_stop")

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open = kind
        event = {"type": "content_block_start", "index": self._index, "content_block": block}
        return out + sse(event, "content_block_start")

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return sse(event, "content_block_delta")

    def head(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return sse({"type": "message_start", "message": message}, "message_start") + sse({"type": "ping"}, "ping")

    def chunk(self, chunk: Chunk) -> bytes:
        out = b""
        for kind, value in pieces(self._feed(chunk), _KINDS):
            if kind == "tool_use":
                block = {"type": "tool_use", "id": value["id"], "name": value["function"]["name"], "input": {}}
                out += self._start("tool_use", block)
                out += self._delta({"type": "input_json_delta", "partial_json": json.dumps(self._input(value))})
                out += self._close()
                continue
            if self._open != kind:
                block = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" else {"type": kind}
                if kind == "text":
                    block["text"] = ""
                out += self._start(kind, block)
            if kind == "thinking":
                out += self._delta({"type": "thinking_delta", "thinking": value})
            else:
                out += self._delta({"type": "text_delta", "text": value})
        return out

    def tail(self) -> bytes:
        out = self._close()
        reason, sequence = _stopped(self.assembler.finish_reason, self._last)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out += sse({"type": "message_delta", "delta": delta, "usage": self._usage()}, "message_delta")
        return out + sse({"type": "message_stop"}, "message_stop")

    def stream_error(self, error: ApiError) -> bytes:
        return sse(error_json("anthropic", error), "error")

    # -- collected -----------------------------------------------------------------------

    def feed(self, chunk: Chunk) -> None:
        for kind, value in pieces(self._feed(chunk), _KINDS):
            last = self._blocks[-1] if self._blocks else None
            if kind == "tool_use":
                self._blocks.append(
                    {
                        "type": "tool_use",
                        "id": value["id"],
                        "name": value["function"]["name"],
                        "input": self._input(value),
                    }
                )
            elif last is not None and last["type"] == kind:
                last[kind] += value
            elif kind == "thinking":
                self._blocks.append({"type": "thinking", "thinking": value, "signature": SIGNATURE})
            else:
                self._blocks.append({"type": "text", "text": value})

    def collected(self) -> bytes:
        reason, sequence = _stopped(self.assembler.finish_reason, self._last)
        return dumps(
            {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": self._blocks,
                "stop_reason": reason,
                "stop_sequence": sequence,
                "usage": self._usage(),
            }
        )

    def error(self, error: ApiError) -> bytes:
        return dumps(error_json("anthropic", error))


def add_anthropic_routes(app: FastAPI, registry: Registry, start: Start) -> None:
    config = registry.config

    @app.post("/v1/messages", response_model=None, summary="Messages (Anthropic)")
    async def messages(body: MessagesRequest) -> GenerationResponse:
        job = await built(messages_job, body, config.image_urls)
        renderer = AnthropicRenderer(job)
        response = await start(job, renderer)
        if job.stream:  # message_start goes out before the usage at the end: count the prompt now
            checkout, ready = response.checkout, response.job  # as the model will render it
            try:
                backend = checkout.model.backend
                n = await asyncio.to_thread(
                    backend.count_prompt_tokens, ready.messages, ready.options, tools=ready.tools
                )
            except BaseException:
                checkout.model.scheduler.release(checkout.ticket)
                raise
            renderer.input_tokens = n or 0
        return response

    @app.post("/v1/messages/count_tokens", summary="Tokens a Messages request's prompt takes (Anthropic)")
    async def count_tokens(body: CountRequest) -> dict[str, int]:
        tools, _, _, _, _ = _tools(body)
        think = _think(body, None)
        messages = await built(to_messages, body, config.image_urls)
        checkout = await registry.checkout(config.model_for(body.model))
        checkout.model.scheduler.release(checkout.ticket)  # counting needs the tokenizer, not a turn
        backend = checkout.model.backend
        options = GenerationOptions(think=think)
        n = await asyncio.to_thread(backend.count_prompt_tokens, messages, options, tools=tools)
        if n is None:
            raise ApiError(400, f"{body.model} cannot count tokens on this server (a remote model)")
        return {"input_tokens": n}
