"""OpenAI's Responses API (POST /v1/responses), which Codex CLI speaks: stateless.

A request becomes the same `Job` as a chat completion (input items → messages, function tools,
tool_choice, `text.format`, `reasoning.effort`, `max_output_tokens`) and goes through the same
`start()`; `ResponsesRenderer` writes the Assembler's deltas as reasoning, message and
function_call output items, streamed as `response.*` events or as one response object.
`previous_response_id` is a 400: nothing is stored, so send the whole conversation as `input`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from ..chat import Chunk, GenerationOptions, Message, ToolCall
from .jobs import Job, ToolMode
from .openai_errors import ApiError, bad_request
from .registry import Registry
from .responses import Assembler
from .schemas import MAX_MESSAGES, MAX_TOOLS, MaxTokens, ModelName, Temperature, TopP
from .shapes import SSE_HEADERS, Renderer, dumps, pieces, sse
from .streaming import GenerationResponse

Start = Callable[[Job, Renderer | None], Awaitable[GenerationResponse]]


class Open(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionTool(Open):
    type: str
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Format(Open):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(Open):
    format: Format | None = None


class Reasoning(Open):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ResponsesRequest(Open):
    model: ModelName
    input: str | list[dict[str, Any]] = Field(max_length=MAX_MESSAGES)
    instructions: str | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None
    stream: bool = False
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where}: a string or a list of text parts", param=where)
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text") or not isinstance(part.get("text"), str):
            raise bad_request(f"{where}[{i}]: only text parts are supported, not {kind!r}", param=where)
        texts.append(part["text"])
    return "".join(texts)


def to_messages(req: ResponsesRequest) -> tuple[Message, ...]:
    out: list[Message] = []
    if req.instructions:
        out.append(Message("system", req.instructions))
    if isinstance(req.input, str):
        out.append(Message("user", req.input))
        return tuple(out)
    reasoning: str | None = None
    for i, item in enumerate(req.input):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message" or (kind is None and "role" in item):
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise bad_request(f"{where}.role: user, system, developer or assistant", param=f"{where}.role")
            text = _text(item.get("content", ""), f"{where}.content")
            if role == "assistant":
                out.append(Message("assistant", text, reasoning=reasoning))
                reasoning = None
            else:
                out.append(Message("system" if role == "developer" else role, text))
        elif kind == "reasoning":
            parts = item.get("content") or item.get("summary") or []
            reasoning = "".join(p.get("text", "") for p in parts if isinstance(p, dict)) or None
        elif kind == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
            if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
                raise bad_request(f"{where}: a function_call needs call_id, name and arguments (JSON text)")
            try:
                parsed = json.loads(arguments or "{}")
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise bad_request(f"{where}.arguments: must be a JSON object, as text", param=f"{where}.arguments")
            call = ToolCall(call_id, name, arguments or "{}")
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":  # calls after the text of the same turn
                out[-1] = Message("assistant", last.content, last.reasoning, (*last.tool_calls, call))
            else:
                out.append(Message("assistant", "", reasoning=reasoning, tool_calls=(call,)))
                reasoning = None
        elif kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str):
                raise bad_request(f"{where}.call_id: required", param=f"{where}.call_id")
            out.append(
                Message("tool", _text(output if output is not None else "", f"{where}.output"), tool_call_id=call_id)
            )
        else:
            raise bad_request(f"{where}.type: {kind!r} items are not supported by this server", param=f"{where}.type")
    return tuple(out)


def _tools(req: ResponsesRequest) -> tuple[tuple[dict, ...] | None, ToolMode, tuple[dict, ...], bool]:
    tools: list[dict[str, Any]] = []
    for i, t in enumerate(req.tools or ()):
        if t.type != "function" or not t.name:
            raise bad_request(f"tools[{i}]: only function tools (with a name) are supported", param=f"tools[{i}]")
        function: dict[str, Any] = {"name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}}}
        if t.description:
            function["description"] = t.description
        tools.append({"type": "function", "function": function})
    choice = req.tool_choice
    several = req.parallel_tool_calls is not False
    if not tools:
        if choice not in (None, "none", "auto"):
            raise bad_request("tool_choice: needs tools", param="tool_choice")
        return None, "off", (), False
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise bad_request("tools: function names must be unique", param="tools")
    if choice == "none":
        return None, "off", (), False
    if choice in (None, "auto"):
        return tuple(tools), "auto", (), False
    if choice == "required":
        return tuple(tools), "forced", tuple(tools), several
    if isinstance(choice, dict) and choice.get("type") == "function":
        forced = tuple(t for t in tools if t["function"]["name"] == choice.get("name"))
        if not forced:
            raise bad_request(f"tool_choice: no tool named {choice.get('name')!r}", param="tool_choice")
        return tuple(tools), "forced", forced, False
    raise bad_request("tool_choice: auto, none, required or {'type': 'function', 'name': …}", param="tool_choice")


def _format(req: ResponsesRequest) -> str | dict[str, Any] | None:
    fmt = req.text.format if req.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.schema_ is None:
        raise bad_request("text.format.schema: required with type 'json_schema'", param="text.format.schema")
    return fmt.schema_


def responses_job(req: ResponsesRequest) -> Job:
    if req.previous_response_id:
        raise bad_request(
            "previous_response_id: not supported: this server is stateless and stores no responses; "
            "send the whole conversation as input items",
            param="previous_response_id",
        )
    tools, mode, forced, several = _tools(req)
    fmt = _format(req)
    if fmt is not None and mode == "forced":
        raise bad_request("text.format cannot be combined with a forced tool_choice", param="text.format")
    effort = req.reasoning.effort if req.reasoning else None
    options = GenerationOptions(
        temperature=req.temperature,
        top_p=req.top_p,
        max_tokens=req.max_output_tokens,
        # A template with levels (Qwen3.8's) takes the level ("xhigh" as "high"); elsewhere any
        # level but none turns thinking on, as OpenAI means it.
        reasoning_effort=None if effort is None else "high" if effort == "xhigh" else effort,
        think_without_levels=None if effort is None else effort != "none",
        response_format=fmt,
    )
    return Job(
        model=req.model,
        kind="chat",
        options=options,
        stream=req.stream,
        include_usage=False,
        messages=to_messages(req),
        tools=tools,
        tool_mode=mode,
        first_call_only=req.parallel_tool_calls is False,
        forced_tools=forced,
        several_calls=several,
    )


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


class ResponsesRenderer:
    """Output items from deltas: reasoning, then message text, and a function_call per call."""

    stream_headers = SSE_HEADERS

    def __init__(self, job: Job, req: ResponsesRequest):
        self.job = job
        self.req = req
        self.id = _id("resp_")
        self.created = int(time.time())
        self.assembler = Assembler(job, job.model)
        self.items: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the reasoning or message item being streamed
        self._seq = 0
        self._last: Chunk | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse(event, kind)

    def _response(self, status: str) -> dict[str, Any]:
        usage = self._last.usage if self._last is not None else None
        length = self.assembler.finish_reason == "length"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" and length else None,
            "error": None,
            "model": self.job.model,
            "instructions": self.req.instructions,
            "output": self.items if status != "in_progress" else [],
            "tools": [t.model_dump(exclude_none=True) for t in self.req.tools or ()],
            "tool_choice": self.req.tool_choice or "auto",
            "parallel_tool_calls": self.req.parallel_tool_calls is not False,
            "temperature": self.req.temperature,
            "top_p": self.req.top_p,
            "max_output_tokens": self.req.max_output_tokens,
            "previous_response_id": None,
            "store": False,
            "metadata": self.req.metadata or {},
            "text": {"format": {"type": "text"}} if not self.req.text else self.req.text.model_dump(by_alias=True),
            "reasoning": {"effort": self.req.reasoning.effort if self.req.reasoning else None, "summary": None},
            "usage": None
            if usage is None
            else {
                "input_tokens": usage.prompt_tokens,
                "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
                "output_tokens": usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.total_tokens,
            },
        }

    def _status(self) -> str:
        return "incomplete" if self.assembler.finish_reason == "length" else "completed"

    # -- items ---------------------------------------------------------------------------

    def _pieces(self, chunk: Chunk) -> list[tuple[str, Any]]:
        if chunk.finish_reason is not None:
            self._last = chunk
        return pieces(self.assembler.feed(chunk), ("reasoning", "message", "function_call"))

    def _close(self, stream: bool) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        index = len(self.items) - 1
        item["status"] = "completed"
        if not stream:
            return b""
        if item["type"] == "reasoning":
            text = item["content"][0]["text"]
            out = self._event(
                "response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0, text=text
            )
        else:
            part = item["content"][0]
            out = self._event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
                logprobs=[],
            )
            out += self._event(
                "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
            )
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _apply(self, kind: str, value: Any, stream: bool) -> bytes:
        out = b""
        if kind == "function_call":
            out += self._close(stream)
            item = {
                "type": "function_call",
                "id": _id("fc_"),
                "call_id": value["id"],
                "name": value["function"]["name"],
                "arguments": value["function"]["arguments"],
                "status": "completed",
            }
            self.items.append(item)
            if stream:
                index = len(self.items) - 1
                out += self._event(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "arguments": "", "status": "in_progress"},
                )
                out += self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=item["arguments"],
                )
                out += self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                    name=item["name"],
                )
                out += self._event("response.output_item.done", output_index=index, item=item)
            return out
        if self._open is None or self._open["type"] != kind:
            out += self._close(stream)
            if kind == "reasoning":
                item = {
                    "type": "reasoning",
                    "id": _id("rs_"),
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": ""}],
                    "status": "in_progress",
                }
            else:
                item = {
                    "type": "message",
                    "id": _id("msg_"),
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}],
                }
            self.items.append(item)
            self._open = item
            if stream:
                index = len(self.items) - 1
                added = json.loads(json.dumps(item))
                if kind == "message":
                    added["content"] = []
                out += self._event("response.output_item.added", output_index=index, item=added)
                if kind == "message":
                    out += self._event(
                        "response.content_part.added",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part=item["content"][0],
                    )
        item = self._open
        item["content"][0]["text"] += value
        if stream:
            index = len(self.items) - 1
            if kind == "reasoning":
                out += self._event(
                    "response.reasoning_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=value,
                )
            else:
                out += self._event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=value,
                    logprobs=[],
                )
        return out

    # -- Renderer ------------------------------------------------------------------------

    def head(self) -> bytes:
        created = self._response("in_progress")
        return self._event("response.created", response=created) + self._event("response.in_progress", response=created)

    def chunk(self, chunk: Chunk) -> bytes:
        return b"".join(self._apply(kind, value, True) for kind, value in self._pieces(chunk))

    def tail(self) -> bytes:
        out = self._close(True)
        status = self._status()
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, response=self._response(status))

    def stream_error(self, error: ApiError) -> bytes:
        return self._event("error", code=error.code or error.type, message=error.message, param=error.param)

    def feed(self, chunk: Chunk) -> None:
        for kind, value in self._pieces(chunk):
            self._apply(kind, value, False)

    def collected(self) -> bytes:
        self._close(False)
        return dumps(self._response(self._status()))

    def error(self, error: ApiError) -> bytes:
        return error.json_bytes()


def add_responses_routes(app: FastAPI, registry: Registry, start: Start) -> None:
    @app.post("/v1/responses", response_model=None, summary="Responses (OpenAI; stateless)")
    async def responses(body: ResponsesRequest) -> GenerationResponse:
        job = responses_job(body)
        return await start(job, ResponsesRenderer(job, body))
