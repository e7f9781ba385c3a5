"""Ollama's request bodies (lax, as Ollama's server is: unknown fields ignored, known ones bounded
as the OpenAI endpoints bound them) and the `Job` each becomes, for `ollama_api.py`."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..chat import GenerationOptions, Message, ToolCall
from .jobs import Job
from .openai_errors import bad_request
from .schemas import (
    MAX_MESSAGES,
    MAX_STOPS,
    MAX_TOOLS,
    MinP,
    ModelName,
    NumCtx,
    PresencePenalty,
    RepeatPenalty,
    Seed,
    StopString,
    Temperature,
    TopK,
    TopP,
)


class Lax(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Options(Lax):
    num_ctx: NumCtx = None
    num_predict: int | None = Field(default=None, ge=-2, le=1 << 20)
    temperature: Temperature = None
    top_p: TopP = None
    top_k: TopK = None
    min_p: MinP = None
    repeat_penalty: RepeatPenalty = None
    presence_penalty: PresencePenalty = None
    frequency_penalty: PresencePenalty = None
    seed: Seed = None
    stop: list[StopString] | None = Field(default=None, max_length=MAX_STOPS)


class Function(Lax):
    name: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class OllamaToolCall(Lax):
    id: str | None = None
    function: Function


class OllamaMessage(Lax):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None


Think = bool | Literal["low", "medium", "high", "max"] | None
Format = Literal["", "json"] | dict[str, Any] | None
KeepAlive = float | str | None


class GenerationRequest(Lax):
    model: ModelName
    stream: bool = True
    options: Options | None = None
    format: Format = None
    keep_alive: KeepAlive = None
    think: Think = None


class ChatRequest(GenerationRequest):
    messages: list[OllamaMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)


class GenerateRequest(GenerationRequest):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: list[str] | None = None
    context: list[int] | None = None


class NameRequest(Lax):
    model: ModelName | None = None
    name: ModelName | None = None  # the older clients' field

    def model_name(self) -> str:
        name = self.model or self.name
        if not name:
            raise bad_request("model: required", param="model")
        return name


class PullRequest(NameRequest):
    stream: bool = True
    insecure: bool | None = None


def keep_alive_seconds(value: KeepAlive) -> float | None | Literal["default"]:
    """Ollama's `keep_alive`: seconds (a number) or a Go duration ("5m", "1h30m", "-1");
    negative means forever (None). "default" when not given."""
    if value is None:
        return "default"
    if isinstance(value, (int, float)):
        return None if value < 0 else float(value)
    import re

    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return keep_alive_seconds(float(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.lstrip("-"))
    if not parts or "".join(a + b for a, b in parts) != text.lstrip("-"):
        raise bad_request(f"keep_alive: a duration like 30s, 5m, 1h or a number of seconds, not {value!r}")
    if text.startswith("-"):
        return None
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, u in parts)


def _think(value: Think) -> dict[str, Any]:
    """The thinking options of Ollama's `think`: true/false switch it; a level goes to a template
    with reasoning levels (Qwen3.8's) as it is ("max" as "high"), and turns thinking on elsewhere,
    as Ollama means any level."""
    if value is None or isinstance(value, bool):
        return {"think": value}
    return {"reasoning_effort": "high" if value == "max" else value, "think_without_levels": True}


def _format(value: Format) -> str | dict[str, Any] | None:
    if value in (None, ""):
        return None
    return "json" if value == "json" else value


def _options(req: GenerationRequest) -> GenerationOptions:
    o = req.options or Options()
    max_tokens = o.num_predict if o.num_predict is not None and o.num_predict >= 0 else None
    return GenerationOptions(
        temperature=o.temperature,
        top_p=o.top_p,
        top_k=o.top_k,
        min_p=o.min_p,
        repeat_penalty=o.repeat_penalty,
        presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty,
        max_tokens=max_tokens,
        seed=o.seed,
        stop=tuple(o.stop or ()),
        response_format=_format(req.format),
        **_think(req.think),
    )


def _tools(tools: list[dict[str, Any]] | None) -> tuple[dict[str, Any], ...] | None:
    if not tools:
        return None
    names = []
    for i, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise bad_request(f"tools[{i}]: a function tool is {{'type': 'function', 'function': {{…}}}}")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"tools[{i}].function.name: required")
        names.append(name)
    if len(set(names)) != len(names):
        raise bad_request("tools: function names must be unique")
    return tuple({"type": "function", "function": t["function"]} for t in tools)


def chat_messages(messages: list[OllamaMessage]) -> tuple[Message, ...]:
    out = []
    last_calls: list[str] = []
    for i, m in enumerate(messages):
        if m.images:
            raise bad_request(f"messages[{i}].images: images are not supported by this server")
        if m.tool_calls and m.role != "assistant":
            raise bad_request(f"messages[{i}].tool_calls: only assistant messages carry tool calls")
        calls = tuple(
            ToolCall(c.id or f"call_{i}_{j}", c.function.name, json.dumps(c.function.arguments, ensure_ascii=False))
            for j, c in enumerate(m.tool_calls or ())
        )
        if calls:
            last_calls = [c.id for c in calls]
        call_id = None
        if m.role == "tool":
            call_id = last_calls.pop(0) if last_calls else f"call_{i}"
        out.append(
            Message(
                role=m.role,
                content=m.content or "",
                reasoning=m.thinking,
                tool_calls=calls,
                tool_call_id=call_id,
                name=m.tool_name,
            )
        )
    return tuple(out)


def chat_job(req: ChatRequest) -> Job:
    tools = _tools(req.tools)
    return Job(
        model=req.model,
        kind="chat",
        options=_options(req),
        stream=req.stream,
        include_usage=False,
        num_ctx=req.options.num_ctx if req.options else None,
        messages=chat_messages(req.messages),
        tools=tools,
        tool_mode="auto" if tools else "off",
    )


def generate_job(req: GenerateRequest) -> Job:
    if req.template:
        raise bad_request(
            "template: a template from a request is never rendered (templates are code); "
            "send raw: true with a prompt you formatted, or leave template out for the model's own"
        )
    if req.suffix:
        raise bad_request("suffix: fill-in-the-middle is not supported by this server")
    if req.images:
        raise bad_request("images: images are not supported by this server")
    if req.context:
        raise bad_request("context: token contexts are not supported; send the conversation to /api/chat")
    common: dict[str, Any] = dict(
        model=req.model,
        options=_options(req),
        stream=req.stream,
        include_usage=False,
        num_ctx=req.options.num_ctx if req.options else None,
    )
    if req.raw:
        return Job(kind="completion", prompt=req.prompt or "", **common)
    messages = [Message("system", req.system)] if req.system else []
    messages.append(Message("user", req.prompt or ""))
    return Job(kind="chat", messages=tuple(messages), **common)
