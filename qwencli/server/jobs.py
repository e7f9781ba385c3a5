"""From a validated OpenAI request to what a backend takes: messages, options, tools.

Everything here is a check a client can fail with a 400 naming the field; nothing touches a
model, so it runs on the event loop before a request is queued. `for_model` then fits the job
to the model it was given to (its tool-call dialect, the grammar of a forced call), still
before it waits its turn.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from ..backends.base import ModelInfo
from ..backends.llama_load import BACKEND_NAME as LLAMA_CPP
from ..backends.llama_logprobs import MAX_TOP_LOGPROBS
from ..chat import GenerationOptions, Image, Message, ToolCall, ToolDialect
from .openai_errors import bad_request
from .schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    NamedToolChoice,
    ResponseFormat,
    Sampling,
)
from .tools import forced_grammar

#: OpenAI's legacy completions endpoint generates 16 tokens unless told otherwise.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16

ToolMode = Literal["off", "auto", "forced"]


@dataclass(frozen=True)
class Job:
    """One generation request, ready for a backend."""

    model: str
    kind: Literal["chat", "completion"]
    options: GenerationOptions
    stream: bool
    include_usage: bool
    num_ctx: int | None = None
    messages: tuple[Message, ...] = ()
    prompt: str = ""
    #: A completions request's prompts, text or token ids, one choice each (`prompt` is unused then).
    prompts: tuple[str | tuple[int, ...], ...] = ()
    #: Completions: the prompt is written before the reply (with its log-probabilities if asked).
    echo: bool = False
    tools: tuple[dict[str, Any], ...] | None = None
    tool_mode: ToolMode = "off"
    #: With `parallel_tool_calls: false`, only the first call is returned.
    first_call_only: bool = False
    #: The tools a forced `tool_choice` allows, and whether one reply may call several.
    forced_tools: tuple[dict[str, Any], ...] = ()
    several_calls: bool = False
    #: How the model writes calls; known once the model is (`for_model`).
    tool_dialect: ToolDialect = "hermes"


def _common_checks(req: Sampling) -> None:
    if req.n not in (None, 1):
        raise bad_request("n: only one choice per request is supported (n=1)", param="n")
    if req.stream_options is not None and not req.stream:
        raise bad_request("stream_options: only allowed when stream is true", param="stream_options")


def _top_n(value: Any, param: str) -> int:
    """A number of alternatives per token: an integer from 0 to MAX_TOP_LOGPROBS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise bad_request(f"{param}: an integer from 0 to {MAX_TOP_LOGPROBS}", param=param)
    return value


def _no_stream(req: Sampling, param: str) -> None:
    if req.stream:
        # The engine hands log-probabilities over with the last chunk only.
        raise bad_request(f"{param}: not supported with stream: true", param=param)


def _stops(req: Sampling) -> tuple[str, ...]:
    if req.stop is None:
        return ()
    return (req.stop,) if isinstance(req.stop, str) else tuple(req.stop)


def _response_format(fmt: ResponseFormat | None) -> str | dict[str, Any] | None:
    if fmt is None or fmt.type == "text":
        if fmt is not None and fmt.json_schema is not None:
            raise bad_request("response_format.json_schema: only with type 'json_schema'", param="response_format")
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise bad_request(
            "response_format.json_schema.schema: required with type 'json_schema'", param="response_format"
        )
    schema = fmt.json_schema.schema_
    try:
        json.dumps(schema)
    except (TypeError, ValueError):
        raise bad_request("response_format.json_schema.schema: not a JSON schema", param="response_format") from None
    return schema


def _options(req: Sampling, max_tokens: int | None, **extra: Any) -> GenerationOptions:
    return GenerationOptions(
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        repeat_penalty=req.repeat_penalty,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        max_tokens=max_tokens,
        seed=req.seed,
        stop=_stops(req),
        **extra,
    )


def _content(message: ChatMessage, index: int) -> tuple[str, tuple[Image, ...]]:
    """The text of a message and its images (`image_url` parts, user messages only). The images
    go before the text in the prompt, wherever the parts had them (as Ollama places them)."""
    content = message.content
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    texts = []
    images = []
    for j, part in enumerate(content):
        if part.type == "image_url" and message.role == "user":
            images.append(_image(part, f"messages[{index}].content[{j}].image_url"))
            continue
        if part.type != "text" or part.text is None:
            raise bad_request(
                f"messages[{index}].content: only text and (in user messages) image_url parts are supported,"
                f" not {part.type!r}",
                param=f"messages[{index}].content",
            )
        texts.append(part.text)
    return "".join(texts), tuple(images)


def _image(part: Any, param: str) -> Image:
    """An `image_url` part's image: a data: URL (base64). Remote URLs are not fetched here."""
    from ..errors import InvalidImage
    from ..images import image_from_data_url

    value = (part.model_extra or {}).get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request(f"{param}: must be an object with a url", param=param)
    if url.startswith(("http://", "https://")):
        raise bad_request(
            f"{param}: remote image URLs are refused (fetching them, --allow-image-urls, is not "
            "implemented yet); send the image inline as a data: URL (base64)",
            param=param,
            code="image_url_not_allowed",
        )
    if not url.startswith("data:"):
        raise bad_request(f"{param}: only data: URLs (base64) are supported", param=param)
    try:
        return image_from_data_url(url)
    except InvalidImage as exc:
        raise bad_request(f"{param}: {exc.message}", param=param, code="invalid_image") from None


def _arguments(text: str, where: str) -> str:
    """A call's arguments as JSON object text: the XML templates iterate them as a mapping
    (`arguments|items`) and the Hermes ones re-encode them, so anything else is refused here
    rather than failing inside the template."""
    if not text.strip():
        return "{}"  # some clients send "" for a call without arguments
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        param = f"{where}.function.arguments"
        raise bad_request(f"{param}: must be a JSON object, as text", param=param)
    return text


def to_messages(messages: list[ChatMessage]) -> tuple[Message, ...]:
    out = []
    for i, m in enumerate(messages):
        role = m.role  # "developer" stays: the template renders it, or as system (templates.py)
        if m.tool_calls and role != "assistant":
            raise bad_request(
                f"messages[{i}].tool_calls: only assistant messages carry tool calls", param=f"messages[{i}].tool_calls"
            )
        if role == "tool" and not m.tool_call_id:
            raise bad_request(
                f"messages[{i}].tool_call_id: required for a tool message", param=f"messages[{i}].tool_call_id"
            )
        if m.content is None and role != "assistant":
            raise bad_request(f"messages[{i}].content: required for a {m.role} message", param=f"messages[{i}].content")
        calls = tuple(
            ToolCall(c.id, c.function.name, _arguments(c.function.arguments, f"messages[{i}].tool_calls[{j}]"))
            for j, c in enumerate(m.tool_calls or ())
        )
        text, images = _content(m, i)
        out.append(
            Message(
                role=role,
                content=text,
                images=images,
                reasoning=m.reasoning_content,
                tool_calls=calls,
                tool_call_id=m.tool_call_id,
                name=m.name,
            )
        )
    return tuple(out)


def _think(req: ChatCompletionRequest) -> bool | None:
    kwargs = req.chat_template_kwargs
    from_kwargs = kwargs.enable_thinking if kwargs is not None else None
    if from_kwargs is not None and req.enable_thinking is not None and from_kwargs != req.enable_thinking:
        raise bad_request("enable_thinking and chat_template_kwargs.enable_thinking disagree", param="enable_thinking")
    return from_kwargs if from_kwargs is not None else req.enable_thinking


def _effort(req: ChatCompletionRequest) -> str | None:
    kwargs = req.chat_template_kwargs
    from_kwargs = kwargs.reasoning_effort if kwargs is not None else None
    if from_kwargs is not None and req.reasoning_effort is not None and from_kwargs != req.reasoning_effort:
        raise bad_request(
            "reasoning_effort and chat_template_kwargs.reasoning_effort disagree", param="reasoning_effort"
        )
    return from_kwargs if from_kwargs is not None else req.reasoning_effort


def _tools(req: ChatCompletionRequest) -> tuple[tuple[dict, ...] | None, ToolMode, tuple[dict, ...]]:
    """(tools for the template, how calls are handled, the tools a forced call may use)."""
    tools = tuple(t.model_dump(exclude_none=True) for t in req.tools or ())
    choice = req.tool_choice
    if not tools:
        if choice not in (None, "none", "auto"):
            raise bad_request("tool_choice: needs tools", param="tool_choice")
        return None, "off", ()
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise bad_request("tools: function names must be unique", param="tools")
    if choice == "none":
        return None, "off", ()
    if choice in (None, "auto"):
        return tools, "auto", ()
    if isinstance(choice, NamedToolChoice):
        forced = tuple(t for t in tools if t["function"]["name"] == choice.function.name)
        if not forced:
            raise bad_request(f"tool_choice: no tool named {choice.function.name!r}", param="tool_choice")
        return tools, "forced", forced
    return tools, "forced", tools  # "required"


def for_model(job: Job, info: ModelInfo) -> Job:
    """`job` fitted to the model that runs it: its tool-call dialect, and the grammar of a
    forced call in that dialect. A 400 when the model cannot take the tools."""
    needs_llama_cpp(job, info)
    if not job.tools:
        return job
    if not info.supports_tools:
        raise bad_request(f"the chat template of {job.model} does not support tools", param="tools")
    job = dataclasses.replace(job, tool_dialect=info.tool_dialect)
    if job.tool_mode != "forced":
        return job
    try:
        grammar = forced_grammar(info.tool_dialect, job.forced_tools, several=job.several_calls)
    except Exception as exc:  # the converter raises several kinds for schemas it cannot express
        raise bad_request(
            f"tools: a function's parameters cannot be turned into a grammar: {exc}", param="tools"
        ) from None
    return dataclasses.replace(job, options=job.options.replace(grammar=grammar))


def chat_job(req: ChatCompletionRequest) -> Job:
    _common_checks(req)
    if req.logprobs is not None and not isinstance(req.logprobs, bool):
        raise bad_request("logprobs: true or false (top_logprobs says how many alternatives)", param="logprobs")
    logprobs = None
    if req.logprobs:
        _no_stream(req, "logprobs")
        logprobs = _top_n(req.top_logprobs or 0, "top_logprobs")
    elif req.top_logprobs not in (None, 0):
        raise bad_request("top_logprobs: needs logprobs: true", param="top_logprobs")
    both = req.max_tokens is not None and req.max_completion_tokens is not None
    if both and req.max_tokens != req.max_completion_tokens:
        raise bad_request("max_tokens and max_completion_tokens disagree; send one", param="max_completion_tokens")
    tools, mode, forced = _tools(req)
    fmt = _response_format(req.response_format)
    if fmt is not None and mode == "forced":
        raise bad_request("response_format cannot be combined with a forced tool_choice", param="response_format")
    options = _options(
        req,
        req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
        think=_think(req),
        reasoning_effort=_effort(req),
        preserve_thinking=req.chat_template_kwargs.preserve_thinking if req.chat_template_kwargs else None,
        response_format=fmt,
        logprobs=logprobs,
    )
    return Job(
        model=req.model,
        kind="chat",
        options=options,
        stream=bool(req.stream),
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        num_ctx=req.num_ctx,
        messages=to_messages(req.messages),
        tools=tools,
        tool_mode=mode,
        first_call_only=req.parallel_tool_calls is False,
        forced_tools=forced,
        several_calls=req.tool_choice == "required" and req.parallel_tool_calls is not False,
    )


def completion_job(req: CompletionRequest) -> Job:
    _common_checks(req)
    for name, default in (("suffix", None), ("best_of", 1)):
        value = getattr(req, name)
        if value not in (None, default):
            raise bad_request(f"{name}: not supported by this server", param=name)
    prompts = _prompts(req.prompt)
    logprobs = None if req.logprobs is None else _top_n(req.logprobs, "logprobs")
    echo = bool(req.echo)
    if logprobs is not None:
        _no_stream(req, "logprobs")
    if echo:
        _no_stream(req, "echo")
    if len(prompts) > 1:
        _no_stream(req, "prompt")  # several choices come one after the other, not interleaved
    max_tokens = req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    options = _options(req, max_tokens, response_format=_response_format(req.response_format))
    # An echoed prompt is written from its own tokens, so they come back even without logprobs.
    options = options.replace(logprobs=logprobs, prompt_logprobs=echo)
    return Job(
        model=req.model,
        kind="completion",
        options=options,
        stream=bool(req.stream),
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
        num_ctx=req.num_ctx,
        prompt=prompts[0] if isinstance(prompts[0], str) else "",
        prompts=prompts,
        echo=echo,
    )


def _prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> tuple[str | tuple[int, ...], ...]:
    """The request's prompts: one text, one list of token ids, or a list of either."""
    if isinstance(prompt, str):
        return (prompt,)
    ids = [p for p in prompt if isinstance(p, int)]
    if len(ids) == len(prompt):
        return (tuple(ids),)
    return tuple(p if isinstance(p, str) else tuple(p) for p in prompt if not isinstance(p, int))


def needs_llama_cpp(job: Job, info: ModelInfo) -> None:
    """Log-probabilities and token-id prompts are read from llama.cpp's own logits and vocabulary:
    a 400 for a model another backend runs, rather than an answer without them."""
    if info.backend == LLAMA_CPP:
        return
    if job.options.logprobs is not None:
        raise bad_request(f"logprobs: not supported by the {info.backend} backend", param="logprobs")
    if job.options.prompt_logprobs:  # an echoed prompt is written from its own tokens
        raise bad_request(f"echo: not supported by the {info.backend} backend", param="echo")
    if any(not isinstance(p, str) for p in job.prompts):
        raise bad_request(f"prompt: token ids are not supported by the {info.backend} backend", param="prompt")
