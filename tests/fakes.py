"""A scripted backend for logic tests of the session, REPL and server (no model needed)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from qwencli.backends.base import Backend, ChunkStream, ModelInfo, PulledStream
from qwencli.chat import Chunk, GenerationOptions, Message, Timings, Usage


@dataclass
class FakeBackend(Backend):
    """Answers each chat with the next scripted reply, one word per chunk.

    Prompt size is counted as words of the messages (plus 4 a message), so context limits can
    be tested with small numbers. `delay` slows each chunk, for cancellation tests.
    """

    replies: list[str] = field(default_factory=lambda: ["Hello there."])
    context_length: int = 4096
    delay: float = 0.0
    calls: list[tuple[list[Message], GenerationOptions]] = field(default_factory=list)
    closed: bool = False
    stopped_early: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.info = ModelInfo(name="fake", backend="fake", context_length=self.context_length)

    def count_prompt_tokens(self, messages: Sequence[Message], options: GenerationOptions, *,
                            tools: Any = None) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    def chat(self, messages: Sequence[Message], options: GenerationOptions, *, tools: Any = None) -> ChunkStream:
        self.calls.append((list(messages), options))
        reply = self.replies[(len(self.calls) - 1) % len(self.replies)]
        return PulledStream(self._stream(reply, self.count_prompt_tokens(messages, options)))

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream:
        return PulledStream(self._stream(self.replies[0], len(prompt.split())))

    def _stream(self, reply: str, n_prompt: int) -> Iterator[Chunk]:
        """The reply's chunks (a generator: subclasses wrap it)."""
        words = reply.split(" ")
        sent = 0
        try:
            for i, word in enumerate(words):
                if self.delay:
                    time.sleep(self.delay)
                yield Chunk(word if i == 0 else " " + word)
                sent += 1
        finally:
            if sent < len(words):
                self.stopped_early.set()
        yield Chunk(finish_reason="stop", usage=Usage(n_prompt, sent), timings=Timings())

    def close(self) -> None:
        self.closed = True
