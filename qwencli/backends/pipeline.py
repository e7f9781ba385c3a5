"""The text side of a reply: the chat prompt and where its reply starts, and the way from
decoded text pieces to chunks (split thinking, apply stop strings). `reply.Reply` feeds it
token by token; the remote backend feeds it the server's text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..chat import Chunk, GenerationOptions, Message
from ..stops import StopFilter
from ..templates import ChatTemplate
from ..thinking import Mode, ThinkingSplitter, initial_mode


def _constrained(options: GenerationOptions) -> bool:
    return bool(options.response_format or options.grammar)


def chat_prompt(
    template: ChatTemplate, messages: Sequence[Message], options: GenerationOptions, tools: Sequence[dict] | None = None
) -> str:
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
