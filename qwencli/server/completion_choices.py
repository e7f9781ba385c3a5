"""A completions response with several choices, an echoed prompt or log-probabilities: what
evaluation clients (lm-eval-harness's `local-completions`) ask for.

The prompts run one after the other in the request's turn (`streaming.produce`), so the chunks
of choice i all come before those of choice i+1 and each choice ends with its last chunk, which
carries the log-probabilities. Collected only: `jobs.completion_job` refuses `stream` with any
of these, so this renderer never writes a stream.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..chat import Chunk, Usage
from .jobs import Job
from .logprobs import completion_logprobs, joined_text
from .openai_errors import ApiError
from .responses import usage_json
from .shapes import OpenAIRenderer


def wants_choices(job: Job) -> bool:
    return job.kind == "completion" and (
        job.echo
        or job.options.logprobs is not None
        or len(job.prompts) > 1
        or any(not isinstance(p, str) for p in job.prompts)
    )


class ChoicesRenderer(OpenAIRenderer):
    """Collects each choice from its chunks; the streaming methods are OpenAIRenderer's, unused."""

    def __init__(self, job: Job):
        super().__init__(job)
        self.job = job
        self._text: list[str] = []
        self._choices: list[dict[str, Any]] = []
        self._usage = Usage()
        self._id = "cmpl-" + uuid.uuid4().hex[:24]
        self._created = int(time.time())

    def feed(self, chunk: Chunk) -> None:
        if chunk.kind == "text":
            self._text.append(chunk.text)
        if chunk.finish_reason is not None:
            self._end_choice(chunk)

    def _end_choice(self, last: Chunk) -> None:
        generated = "".join(self._text)
        self._text = []
        text, logprobs = generated, None
        if self.job.echo:
            prompt_text, _ = joined_text(last.prompt_logprobs)
            text = prompt_text + generated
        if self.job.options.logprobs is not None:
            tokens = (*last.prompt_logprobs, *last.logprobs) if self.job.echo else last.logprobs
            _, offsets = joined_text(tokens)
            logprobs = completion_logprobs(tokens, offsets)
        usage = last.usage or Usage()
        self._usage = Usage(
            prompt_tokens=self._usage.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self._usage.completion_tokens + usage.completion_tokens,
            cached_tokens=self._usage.cached_tokens + usage.cached_tokens,
        )
        finish = "length" if last.finish_reason == "length" else "stop"
        self._choices.append({"index": len(self._choices), "text": text, "logprobs": logprobs, "finish_reason": finish})

    def collected(self) -> bytes:
        body = {
            "id": self._id,
            "object": "text_completion",
            "created": self._created,
            "model": self.job.model,
            "system_fingerprint": None,
            "choices": self._choices,
            "usage": usage_json(self._usage),
        }
        return json.dumps(body, ensure_ascii=False).encode()

    def error(self, error: ApiError) -> bytes:
        return error.json_bytes()
