"""Backend chunks → OpenAI response objects, streamed or collected.

One assembler per request turns the backend's chunks into deltas (content, reasoning_content,
tool_calls); streaming sends each delta as a chunk object, non-streaming folds the same deltas
into one message, so the two can never disagree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from ..chat import Chunk, TokenLogprob, Usage
from .jobs import Job
from .logprobs import chat_logprobs
from .tools import CallInReasoning, Event, Text, call_stream


def usage_json(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _finish_reason(backend_reason: str | None, made_calls: bool) -> str:
    if backend_reason == "length":
        return "length"
    return "tool_calls" if made_calls else "stop"


class Assembler:
    """Deltas for one choice, from backend chunks."""

    def __init__(self, job: Job, model: str):
        self.job = job
        self.model = model
        self.created = int(time.time())
        prefix = "chatcmpl-" if job.kind == "chat" else "cmpl-"
        self.id = prefix + uuid.uuid4().hex[:24]
        self._tools = (
            call_stream(job.tool_dialect, job.tools or (), first_only=job.first_call_only)
            if job.tool_mode != "off"
            else None
        )
        # Only the XML dialect's models (Qwen3.5 and later) call from inside their thinking.
        xml = self._tools is not None and job.tool_dialect == "xml"
        self._reasoning_cut = CallInReasoning() if xml else None
        self._n_calls = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.logprobs: tuple[TokenLogprob, ...] = ()

    # -- deltas --------------------------------------------------------------------------

    def feed(self, chunk: Chunk) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = []
        text = chunk.text
        if text and chunk.kind == "reasoning":
            reasoning, text = self._reasoning_cut.feed(text) if self._reasoning_cut else (text, "")
            if reasoning:
                deltas.append({"reasoning_content": reasoning})
        if self._reasoning_cut and ((text and chunk.kind != "reasoning") or chunk.finish_reason is not None):
            held = self._reasoning_cut.finish()  # the reasoning ended without a call in it
            if held:
                deltas.append({"reasoning_content": held})
        if text:
            if self._tools is None:
                deltas.append({"content": text})
            else:
                deltas.extend(self._tool_deltas(self._tools.feed(text)))
        if chunk.finish_reason is not None:
            if self._tools is not None:
                deltas.extend(self._tool_deltas(self._tools.finish()))
            self.finish_reason = _finish_reason(chunk.finish_reason, self._n_calls > 0)
            self.usage = chunk.usage
            self.logprobs = chunk.logprobs
        return deltas

    def _tool_deltas(self, events: Iterable[Event]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, Text):
                out.append({"content": event.text})
                continue
            out.append(
                {
                    "tool_calls": [
                        {
                            "index": self._n_calls,
                            "id": event.id,
                            "type": "function",
                            "function": {"name": event.name, "arguments": event.arguments},
                        }
                    ]
                }
            )
            self._n_calls += 1
        return out

    # -- streaming -----------------------------------------------------------------------

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        obj = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.job.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.job.include_usage:
            obj["usage"] = None
        return obj

    def _choice(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        if self.job.kind == "chat":
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"index": 0, "text": delta.get("content", ""), "logprobs": None, "finish_reason": finish_reason}

    def stream_head(self) -> list[dict[str, Any]]:
        if self.job.kind != "chat":
            return []
        return [self._chunk([self._choice({"role": "assistant", "content": ""})])]

    def stream_chunks(self, chunk: Chunk) -> list[dict[str, Any]]:
        out = []
        for delta in self.feed(chunk):
            if self.job.kind == "completion" and "content" not in delta:
                continue
            out.append(self._chunk([self._choice(delta)]))
        return out

    def stream_tail(self) -> list[dict[str, Any]]:
        out = [self._chunk([self._choice({}, self.finish_reason or "stop")])]
        if self.job.include_usage:
            final = self._chunk([])
            final["usage"] = usage_json(self.usage)
            out.append(final)
        return out

    # -- collected -----------------------------------------------------------------------

    def collected(self, deltas: list[dict[str, Any]]) -> dict[str, Any]:
        content = "".join(d.get("content", "") for d in deltas)
        reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
        calls = [c for d in deltas for c in d.get("tool_calls", ())]
        base = {
            "id": self.id,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "usage": usage_json(self.usage),
        }
        finish = self.finish_reason or "stop"
        if self.job.kind == "completion":
            return {
                **base,
                "object": "text_completion",
                "choices": [{"index": 0, "text": content, "logprobs": None, "finish_reason": finish}],
            }
        message: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
        if reasoning:
            message["reasoning_content"] = reasoning
        if calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        logprobs = chat_logprobs(self.logprobs) if self.job.options.logprobs is not None else None
        return {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}],
        }
