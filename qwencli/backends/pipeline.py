"""What the local backends share around their engines: the chat prompt and where its reply
starts, and the way from decoded text pieces to chunks (split thinking, apply stop strings).

The token loop runs on the engine thread so that a stop string ends it at once and the usage in
the final chunk counts what was really generated.
"""

from __future__ import annotations

import codecs
import threading
import time
from typing import Callable, Iterable, Iterator, Sequence

from ..chat import Chunk, GenerationOptions, Message, Timings, Usage
from ..stops import StopFilter
from ..templates import ChatTemplate
from ..thinking import Mode, ThinkingSplitter, initial_mode


def _constrained(options: GenerationOptions) -> bool:
    return bool(options.response_format or options.grammar)


def chat_prompt(template: ChatTemplate, messages: Sequence[Message], options: GenerationOptions,
                tools: Sequence[dict] | None = None) -> str:
    """A chat turn's prompt. A constrained reply is rendered with thinking off: the grammar
    leaves no room for <think>."""
    think = False if _constrained(options) and template.supports_thinking else options.think
    return template.render(messages, tools=tools, think=think)


def reply_mode(template: ChatTemplate, prompt: str, options: GenerationOptions) -> Mode:
    """Where the reply to `prompt` starts: thinking, text, or to be detected."""
    return "text" if _constrained(options) else initial_mode(template.supports_thinking, prompt[-40:])


class TextPipeline:
    def __init__(self, thinking_mode: Mode, stops: Sequence[str] = ()):
        self._splitter = ThinkingSplitter(thinking_mode)
        self._stops = StopFilter(stops)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def feed(self, piece: str) -> Iterator[Chunk]:
        for chunk in self._splitter.feed(piece):
            yield from self._filter(chunk)

    def flush(self) -> Iterator[Chunk]:
        for chunk in self._splitter.flush():
            yield from self._filter(chunk)
        rest = self._stops.flush()
        if rest:
            yield Chunk(rest)

    def _filter(self, chunk: Chunk) -> Iterator[Chunk]:
        if chunk.kind == "reasoning":
            if not self._stops.stopped:
                yield chunk
            return
        text = self._stops.feed(chunk.text)
        if text:
            yield Chunk(text)


def token_chunks(tokens: Iterable[int], pipeline: TextPipeline, *, piece: Callable[[int], bytes],
                 is_end: Callable[[int], bool], cancel: threading.Event, budget: int, started: float,
                 n_prompt: int, cached: int, lowered_threads: Callable[[], int | None] = lambda: None
                 ) -> Iterator[Chunk]:
    """The local backends' token loop: each token's bytes decoded once (UTF-8 safe across tokens),
    through the pipeline, stopping at an end token, a stop string, `cancel` or the budget; then the
    last chunk with usage and timings. Stopping simply stops pulling from `tokens`."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    n_out = 0
    finish = "length"
    first = started
    for token in tokens if budget > 0 else ():
        if n_out == 0:
            first = time.perf_counter()
        if is_end(token):
            finish = "stop"
            break
        n_out += 1
        text = decoder.decode(piece(token))
        if text:
            yield from pipeline.feed(text)
            if pipeline.stopped:
                finish = "stop"
                break
        if cancel.is_set():
            finish = "cancelled"
            break
        if n_out >= budget:
            break
    ended = time.perf_counter()
    if finish != "stop" or not pipeline.stopped:
        tail = decoder.decode(b"", final=True)
        if tail:
            yield from pipeline.feed(tail)
        yield from pipeline.flush()
    yield Chunk(
        finish_reason=finish,
        usage=Usage(prompt_tokens=n_prompt, completion_tokens=n_out, cached_tokens=cached),
        timings=Timings(prompt_seconds=first - started, generation_seconds=ended - first,
                        first_token_seconds=first - started, threads=lowered_threads()),
    )
