"""The values that flow between the CLI, the server and the backends.

Small frozen dataclasses: a message, the generation options, and the chunk a backend streams.
A backend has one generation path, an iterator of chunks; the last chunk carries the finish
reason, the token usage and the timings. `collect()` folds a stream into a `Completion`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

#: "developer": OpenAI's name for instructions above the user's; rendered as such where the model's
#: template knows the role, else as "system" (qwencli.templates).
Role = Literal["system", "developer", "user", "assistant", "tool"]
#: Qwen3.8's thinking levels (none/minimal/low: off, medium/high: on), also OpenAI's request field.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
ChunkKind = Literal["text", "reasoning"]
#: "cancelled": stopped by the caller (Ctrl-C, a closed pipe, a client that went away).
FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]
#: How a model writes tool calls, as its chat template teaches: Hermes `<tool_call>{json}` (Qwen2.5,
#: Qwen3, QwQ) or Qwen3-Coder XML `<tool_call><function=…><parameter=…>` (Qwen3-Coder, Qwen3.5 on).
ToolDialect = Literal["hermes", "xml"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the OpenAI API carries it


@dataclass(frozen=True, slots=True)
class Image:
    """An image attached to a message: its bytes as given (validated by `qwencli.images`), their
    sha256 (what /save keeps and what tells two images apart) and where it came from."""

    data: bytes = field(repr=False)
    sha256: str
    source: str | None = None  # a path, "-" (stdin) or "data:" (a request)
    width: int = 0
    height: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    #: Images shown with this message, placed before its text (as Ollama does).
    images: tuple[Image, ...] = ()

    def to_template(self) -> dict[str, Any]:
        """The dict a Hugging Face chat template expects for this message. With images, the
        content is a list of parts ({"type": "image"} for each, then the text), which Qwen-VL
        templates render as `<|vision_start|><|image_pad|><|vision_end|>`."""
        content: Any = self.content
        if self.images:
            content = [{"type": "image"} for _ in self.images] + [{"type": "text", "text": self.content}]
        out: dict[str, Any] = {"role": self.role, "content": content}
        if self.reasoning is not None:
            out["reasoning_content"] = self.reasoning
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    def to_json(self) -> dict[str, Any]:
        """What /save writes. Images by path and sha256, never their bytes: a saved conversation
        stays small, and /load says when a file went missing or changed (`session.load`)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning:
            out["reasoning"] = self.reasoning
        if self.images:
            out["images"] = [
                {"path": i.source if i.source and i.source.startswith("/") else None, "sha256": i.sha256}
                for i in self.images
            ]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        role = data.get("role")
        content = data.get("content")
        if role not in ("system", "developer", "user", "assistant", "tool") or not isinstance(content, str):
            raise ValueError(f"not a chat message: {str(data)[:80]}")
        reasoning = data.get("reasoning")
        return cls(role=role, content=content, reasoning=reasoning if isinstance(reasoning, str) else None)


def _arguments(text: str) -> Any:
    # Templates expect arguments as an object (Qwen2.5's applies `tojson` to them, which would
    # double-encode the OpenAI API's JSON string); keep the text if it is not JSON.
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Sampling and stopping. None means "the model's default" (see `qwencli.sampling`)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    #: None: the template's default. False renders Qwen3's `enable_thinking=False`.
    think: bool | None = None
    #: Qwen3.8's `reasoning_effort`; where the template lacks it, it sets `think` (qwencli.thinking).
    reasoning_effort: ReasoningEffort | None = None
    #: What `think` becomes for `reasoning_effort` on a template without levels. None: Qwen3.8's
    #: own mapping (`thinking.effort_thinks`: low is off); Ollama's `think: "low"` and Responses'
    #: `reasoning.effort` say True (any level but none thinks, as those APIs mean it).
    think_without_levels: bool | None = None
    #: Tokens the reasoning may take; then the backend closes it and the answer follows
    #: (Anthropic's `thinking.budget_tokens`; backends/thinking_budget.py). None: no limit.
    thinking_budget: int | None = None
    #: Qwen3.6's `preserve_thinking`: earlier turns keep their reasoning in the prompt.
    preserve_thinking: bool | None = None
    #: "json" for any JSON object, or a JSON schema (dict) the output must follow.
    response_format: str | dict[str, Any] | None = None
    #: A raw GBNF grammar (llama.cpp only); built by the server for forced tool calls.
    grammar: str | None = None
    #: Log-probabilities of the generated tokens, with this many alternatives each (0: only the
    #: token's own); None: none. llama.cpp only: the server refuses it for other backends.
    logprobs: int | None = None
    #: Also every prompt token's log-probability (OpenAI's `echo` with `logprobs`): the prompt is
    #: then read with logits at every position, so only when asked.
    prompt_logprobs: bool = False

    def replace(self, **changes: Any) -> GenerationOptions:
        return dataclasses.replace(self, **changes)

    def merged_over(self, defaults: GenerationOptions) -> GenerationOptions:
        """These options, with every unset field taken from `defaults`."""
        values = {
            f.name: getattr(self, f.name) if getattr(self, f.name) not in (None, ()) else getattr(defaults, f.name)
            for f in dataclasses.fields(self)
        }
        return GenerationOptions(**values)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Prompt tokens whose KV cache was reused from the previous request.
    cached_tokens: int = 0
    #: What each image of the prompt cost, in prompt order (included in `prompt_tokens`).
    image_tokens: tuple[int, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds, measured by the backend around its own work."""

    #: Evaluating the prompt, up to the first token: after tokenizing, as llama-server's
    #: `prompt_ms` and llama-bench's pp (the rate `rates` gives is the engine's).
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0
    #: From the request's start (template, tokenizing, the prompt) to the first token.
    first_token_seconds: float = 0.0
    #: CPU threads the reply ended with, when fewer than the backend started with (a busy CPU).
    threads: int | None = None

    def rates(self, usage: Usage) -> dict[str, float]:
        def rate(tokens: int, seconds: float) -> float:
            return round(tokens / seconds, 2) if seconds > 0 else 0.0

        evaluated = usage.prompt_tokens - usage.cached_tokens
        # The first generated token comes out of the prompt pass; the rest are decode steps.
        return {
            "prompt_tokens_per_second": rate(evaluated, self.prompt_seconds),
            "generation_tokens_per_second": rate(max(usage.completion_tokens - 1, 0), self.generation_seconds),
        }


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token and how likely the model found it, from the logits the sampler saw."""

    token: int
    piece: bytes  # the token's bytes (a piece of a UTF-8 character, sometimes)
    #: Natural log; None for the first prompt token, which nothing before it predicts.
    logprob: float | None
    #: The most likely tokens at that position, most likely first: (token, piece, logprob).
    top: tuple[tuple[int, bytes, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str = ""
    kind: ChunkKind = "text"
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    #: On the last chunk: the stop string that ended the reply, if one did (Anthropic reports it).
    stop_sequence: str | None = None
    #: On the last chunk only, when the options asked: the generated tokens' log-probabilities
    #: (in order, the end-of-turn token left out) and the prompt's (every prompt token).
    logprobs: tuple[TokenLogprob, ...] = ()
    prompt_logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    reasoning: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings = field(default_factory=Timings)


def collect(chunks: Iterable[Chunk]) -> Completion:
    """The non-streaming answer: the stream, collected."""
    text: list[str] = []
    reasoning: list[str] = []
    last = Chunk(finish_reason="stop")
    for chunk in chunks:
        (reasoning if chunk.kind == "reasoning" else text).append(chunk.text)
        if chunk.finish_reason is not None:
            last = chunk
    return Completion(
        text="".join(text),
        reasoning="".join(reasoning),
        finish_reason=last.finish_reason or "stop",
        usage=last.usage or Usage(),
        timings=last.timings or Timings(),
    )
