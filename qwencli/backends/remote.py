"""The remote backend: a model on an OpenAI-compatible server, behind the same protocol as the
local engines — hosted Qwen (Model Studio) or any `--host` (qwen serve, vLLM, llama-server…).

The server samples, applies the chat template and stop strings; we send only the settings the
user gave (None means "the server's default") and turn its stream back into `Chunk`s: reasoning
from `reasoning_content` or from `<think>` in the content, usage from the final usage event, and
timings measured here (time to first token, tokens per second).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Generator, Sequence
from typing import Any

from ..chat import Chunk, GenerationOptions, Message, Timings, Usage
from ..errors import ModelNotFound, UsageError
from ..resolved import Endpoint, ResolvedModel
from ..stderr import notice
from .base import Backend, ChunkStream, LoadOptions, ModelInfo, PulledStream
from .openai_client import OpenAIClient
from .pipeline import TextPipeline

FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter"}


class RemoteBackend(Backend):
    def __init__(self, model: ResolvedModel, load: LoadOptions = LoadOptions(), *, client: OpenAIClient | None = None):
        if model.endpoint is None:
            raise UsageError(f"{model.name} has no server to talk to")
        started = time.monotonic()
        self.endpoint: Endpoint = model.endpoint
        self._client = client or OpenAIClient(self.endpoint, on_retry=notice)
        context = model.hints.get("context") or 0
        if self.endpoint.provider == "openai":
            context = self._check_model() or context
        if load.context_length:
            context = load.context_length
        self.info = ModelInfo(
            name=model.name,
            backend="remote",
            context_length=context,
            trained_context=context or None,
            family=model.hints.get("family"),
            supports_thinking=True,
            supports_tools=True,
            load_seconds=time.monotonic() - started,
            context_reason=f"{context or 'unknown'} (the server's)",
        )

    def _check_model(self) -> int | None:
        """Fail at start, with the names it has, when the server does not serve this model.
        Returns the context length when the server tells it (qwen serve and llama-server do)."""
        models = self._client.models()
        if models is None:  # no /models endpoint: the first request will tell
            return None
        ids = [str(m.get("id")) for m in models if m.get("id")]
        if ids and self.endpoint.model not in ids:
            close = difflib.get_close_matches(self.endpoint.model, ids, n=3, cutoff=0.4)
            listed = ", ".join(close or ids[:5])
            raise ModelNotFound(
                f"{self.endpoint.base_url} does not serve {self.endpoint.model!r}",
                f"it serves: {listed}" + (" …" if len(ids) > 5 and not close else ""),
            )
        entry = next((m for m in models if m.get("id") == self.endpoint.model), {})
        # vLLM says max_model_len; llama-server says meta.n_ctx_train.
        for value in (
            entry.get("context_length"),
            entry.get("max_model_len"),
            entry.get("n_ctx"),
            (entry.get("meta") or {}).get("n_ctx_train"),
        ):
            if isinstance(value, int) and value > 0:
                return value
        return None

    # -- the protocol ------------------------------------------------------------------------

    def count_prompt_tokens(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict[str, Any]] | None = None
    ) -> int | None:
        return None  # only the server knows its tokenizer; it reports an overflow itself

    def chat(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict[str, Any]] | None = None
    ) -> ChunkStream:
        body: dict[str, Any] = {"model": self.endpoint.model, "messages": [_message(m) for m in messages]}
        if tools:
            body["tools"] = list(tools)
        body.update(self._settings(options))
        return PulledStream(self._generate("chat/completions", body, chat=True, options=options))

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream:
        body: dict[str, Any] = {"model": self.endpoint.model, "prompt": prompt}
        body.update(self._settings(options, chat=False))
        return PulledStream(self._generate("completions", body, chat=False, options=options))

    def close(self) -> None:
        self._client.close()

    # -- requests ----------------------------------------------------------------------------

    def _settings(self, options: GenerationOptions, *, chat: bool = True) -> dict[str, Any]:
        standard: dict[str, Any] = {
            "temperature": options.temperature,
            "top_p": options.top_p,
            "max_tokens": options.max_tokens,
            "seed": options.seed,
            "presence_penalty": options.presence_penalty,
            "frequency_penalty": options.frequency_penalty,
        }
        body = {k: v for k, v in standard.items() if v is not None}
        if options.stop:
            body["stop"] = list(options.stop)
        # Beyond the OpenAI API: qwen serve, vLLM and llama-server take these as extra fields,
        # and Model Studio takes top_k and repetition_penalty. Sent only when the user set them.
        if options.top_k is not None:
            body["top_k"] = options.top_k
        if options.min_p is not None:
            body["min_p"] = options.min_p
        if options.repeat_penalty is not None:
            key = "repetition_penalty" if self.endpoint.provider == "dashscope" else "repeat_penalty"
            body[key] = options.repeat_penalty
        if chat and options.response_format == "json":
            body["response_format"] = {"type": "json_object"}
        elif chat and isinstance(options.response_format, dict):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": options.response_format},
            }
        if chat and options.think is not None:
            if self.endpoint.provider == "dashscope":
                body["enable_thinking"] = options.think
            else:
                body["chat_template_kwargs"] = {"enable_thinking": options.think}
        if chat and options.reasoning_effort is not None:
            body["reasoning_effort"] = options.reasoning_effort
        if chat and options.preserve_thinking is not None and self.endpoint.provider != "dashscope":
            body.setdefault("chat_template_kwargs", {})["preserve_thinking"] = options.preserve_thinking
        body["stream_options"] = {"include_usage": True}
        return body

    def _generate(
        self, path: str, body: dict[str, Any], *, chat: bool, options: GenerationOptions
    ) -> Generator[Chunk, None, None]:
        started = time.monotonic()
        first: float | None = None
        last = started
        pieces = 0
        finish: str | None = None
        usage: Usage | None = None
        # Servers without a reasoning parser leave `<think>…</think>` in the content.
        pipeline = TextPipeline("detect" if chat else "text")
        events = self._client.stream(path, body)
        try:
            for event in events:
                if isinstance(event.get("usage"), dict):
                    usage = _usage(event["usage"])
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") or {} if chat else {}
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    content = delta.get("content") if chat else choice.get("text")
                    reasoning_text = reasoning if isinstance(reasoning, str) else ""
                    content_text = content if isinstance(content, str) else ""
                    if reasoning_text or content_text:
                        last = time.monotonic()
                        first = first if first is not None else last
                        pieces += 1
                    if reasoning_text:
                        yield Chunk(reasoning_text, kind="reasoning")
                    if content_text:
                        yield from pipeline.feed(content_text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        finally:
            events.close()
        yield from pipeline.flush()
        first = first if first is not None else last
        timings = Timings(
            prompt_seconds=first - started, generation_seconds=last - first, first_token_seconds=first - started
        )
        yield Chunk(
            finish_reason=finish if finish in FINISH_REASONS else "stop",  # type: ignore[arg-type]
            usage=usage or Usage(completion_tokens=pieces),
            timings=timings,
        )


def _message(message: Message) -> dict[str, Any]:
    # Not every OpenAI-compatible server knows "developer"; for Qwen it means the system message.
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": message.content}
    if message.images:
        import base64

        # OpenAI's shape for images: data: URLs in image_url parts, before the text as the prompt has them.
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": f"data:image;base64,{base64.b64encode(i.data).decode()}"}}
            for i in message.images
        ]
        out["content"] = [*parts, {"type": "text", "text": message.content}]
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _usage(data: dict[str, Any]) -> Usage:
    def count(key: str) -> int:
        value = data.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    details = data.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        cached_tokens=cached if isinstance(cached, int) else 0,
    )
