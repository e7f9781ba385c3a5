"""One reply, from sampled tokens to chunks: the per-token loop every local backend runs.

Each token's bytes are decoded once (UTF-8 safe across tokens) and go through the
`TextPipeline` (thinking, stop strings); the reply ends at an end-of-turn token, a stop string,
a cancel or its token budget, and its last chunk carries usage and timings. The token loop
runs on the engine thread, so a stop string ends it at once and the usage counts what was
really generated.

Tokens are pushed (`add`) rather than pulled: the batched engine advances many replies per
decode step, the one-at-a-time engines drive theirs with `run`. Chunks go straight to `emit`.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from ..chat import Chunk, FinishReason, Timings, TokenLogprob, Usage
from ..thinking import Mode
from .pipeline import TextPipeline


def _no_threads() -> int | None:
    return None


class Reply:
    __slots__ = (
        "_emit",
        "_pipeline",
        "_decode",
        "_piece",
        "_is_end",
        "_cancel",
        "_budget",
        "_threads",
        "n_prompt",
        "n_cached",
        "image_tokens",
        "n_out",
        "started",
        "prompt_started",
        "first",
        "finish_reason",
        "finished",
        "logprobs",
        "prompt_logprobs",
    )

    def __init__(
        self,
        emit: Callable[[Chunk], None],
        *,
        mode: Mode,
        stops: Sequence[str],
        piece: Callable[[int], bytes],
        is_end: Callable[[int], bool],
        cancel: threading.Event,
        budget: int,
        n_prompt: int,
        cached: int,
        started: float | None = None,
        prompt_started: float | None = None,
        threads: Callable[[], int | None] = _no_threads,
        image_tokens: tuple[int, ...] = (),
    ):
        """`piece`: a token's bytes; `is_end`: whether a token ends the turn; `threads`: the CPU
        threads the engine is down to, if fewer than it started with (for the last chunk).
        `started`: when the request began; `prompt_started`: when the engine began evaluating its
        prompt (tokenized; default `started`)."""
        self._emit = emit
        self._pipeline = TextPipeline(mode, stops)
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._piece = piece
        self._is_end = is_end
        self._cancel = cancel
        self._budget = budget
        self._threads = threads
        self.n_prompt = n_prompt
        self.n_cached = cached
        self.image_tokens = image_tokens
        self.n_out = 0
        self.started = self.first = time.perf_counter() if started is None else started
        self.prompt_started = self.started if prompt_started is None else prompt_started
        self.finish_reason: FinishReason = "length"
        self.finished = budget <= 0  # nothing may be generated: only the last chunk is left
        #: Filled by the engine when the options ask: one entry per sampled token (an end-of-turn
        #: token too: `finish` keeps the first `n_out`), and the prompt's, for the last chunk.
        self.logprobs: list[TokenLogprob] = []
        self.prompt_logprobs: tuple[TokenLogprob, ...] = ()

    def add(self, token: int) -> bool:
        """Take the next sampled token; True when the reply is over (`finish()` comes next)."""
        if self.n_out == 0:
            self.first = time.perf_counter()
        if self._is_end(token):
            self.finish_reason = "stop"
            return True
        self.n_out += 1
        text = self._decode(self._piece(token))
        if text:
            pipeline, emit = self._pipeline, self._emit
            for chunk in pipeline.feed(text):
                emit(chunk)
            if pipeline.stopped:
                self.finish_reason = "stop"
                return True
        if self._cancel.is_set():
            self.finish_reason = "cancelled"
            return True
        return self.n_out >= self._budget

    def run(self, tokens: Iterable[int]) -> None:
        """The whole reply from `tokens`, then its last chunk. Stopping simply stops pulling."""
        if not self.finished:
            add = self.add
            for token in tokens:
                if add(token):
                    break
        self.finish()

    def finish(self, reason: FinishReason | None = None) -> None:
        """Emit what the decoder and the pipeline still hold, then the last chunk."""
        if reason is not None:
            self.finish_reason = reason
        ended = time.perf_counter()
        pipeline, emit = self._pipeline, self._emit
        if not pipeline.stopped:
            tail = self._decode(b"", final=True)
            if tail:
                for chunk in pipeline.feed(tail):
                    emit(chunk)
            for chunk in pipeline.flush():
                emit(chunk)
        self.finished = True
        first, started = self.first, self.started
        emit(
            Chunk(
                finish_reason=self.finish_reason,
                usage=Usage(
                    prompt_tokens=self.n_prompt,
                    completion_tokens=self.n_out,
                    cached_tokens=self.n_cached,
                    image_tokens=self.image_tokens,
                ),
                timings=Timings(
                    prompt_seconds=first - self.prompt_started,
                    generation_seconds=ended - first,
                    first_token_seconds=first - started,
                    threads=self._threads(),
                ),
                stop_sequence=pipeline.stop_sequence,
                logprobs=tuple(self.logprobs[: self.n_out]),
                prompt_logprobs=self.prompt_logprobs,
            )
        )
