"""The text side of a reply: the chat prompt and where its reply starts, and the way from
decoded text pieces to chunks (split thinking, apply stop strings). `reply.Reply` feeds it
token by token; the remote backend feeds it the server's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..chat import Chunk, GenerationOptions, Message
from ..errors import TemplateError
from ..stops import StopFilter
from ..templates import ChatTemplate
from ..thinking import Mode, ThinkingSplitter, effort_thinks, initial_mode
from .local import common_prefix


def _constrained(options: GenerationOptions) -> bool:
    return bool(options.response_format or options.grammar)


def chat_prompt(
    template: ChatTemplate, messages: Sequence[Message], options: GenerationOptions, tools: Sequence[dict] | None = None
) -> str:
    """A chat turn's prompt. A constrained reply is rendered with thinking off: the grammar
    leaves no room for <think>."""
    think, extra = _switches(template, options)
    return template.render(messages, tools=tools, think=think, extra=extra)


def checkpoint_prefixes(
    template: ChatTemplate,
    messages: Sequence[Message],
    options: GenerationOptions,
    tools: Sequence[dict] | None,
    prompt: str,
) -> tuple[str, ...]:
    """Where a later prompt is likely to part from this one, as prefixes of `prompt`: where the
    last message's text starts (an edited question, an /undo) and where the history ends (the next
    turn, a /regen). Hybrid models checkpoint their memory there (backends/llama_memory.py)."""
    think, extra = _switches(template, options)
    found: set[str] = set()
    try:
        history = template.render(messages, tools=tools, think=think, extra=extra, add_generation_prompt=False)
        if prompt.startswith(history):
            found.add(history)
        if len(messages) >= 2:
            probe = [*messages[:-1], Message(messages[-1].role, "\x00")]
            other = template.render(probe, tools=tools, think=think, extra=extra, add_generation_prompt=False)
            found.add(prompt[: common_prefix(prompt, other)])
    except TemplateError:
        pass  # the prompt itself rendered; without checkpoints a turn is only slower
    return tuple(sorted((p for p in found if 0 < len(p) < len(prompt)), key=len))


def _switches(template: ChatTemplate, options: GenerationOptions) -> tuple[bool | None, dict]:
    """`enable_thinking` and the other template switches the options ask for."""
    think = False if _constrained(options) and template.supports_thinking else options.think
    extra: dict = {}
    if options.preserve_thinking is not None:
        extra["preserve_thinking"] = options.preserve_thinking
    if options.reasoning_effort is not None and think is None:
        # Qwen3.8's template maps the level itself; older ones only know enable_thinking.
        if template.supports_reasoning_effort:
            extra["reasoning_effort"] = options.reasoning_effort
        elif options.think_without_levels is not None:
            think = options.think_without_levels
        else:
            think = effort_thinks(options.reasoning_effort)
    return think, extra


def reply_mode(template: ChatTemplate, prompt: str, options: GenerationOptions) -> Mode:
    """Where the reply to `prompt` starts: thinking, text, or to be detected."""
    return "text" if _constrained(options) else initial_mode(template.supports_thinking, prompt[-40:])


def as_rendered(options: GenerationOptions, mode: Mode) -> GenerationOptions:
    """`options` with `think` as the prompt turned out, so the family's sampling defaults follow
    the mode the template chose (Qwen3.5's small sizes, 2507 Instruct/Thinking, reasoning_effort)."""
    if options.think is not None or mode == "detect":
        return options
    return options.replace(think=mode == "reasoning")


class TextPipeline:
    def __init__(self, thinking_mode: Mode, stops: Sequence[str] = ()):
        self._splitter = ThinkingSplitter(thinking_mode)
        self._stops = StopFilter(stops)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    @property
    def stop_sequence(self) -> str | None:
        """The stop string that ended the reply, if one did."""
        return self._stops.matched

    def feed(self, piece: str) -> Iterable[Chunk]:
        if self._splitter.passing:  # most tokens of most replies: no generators on the way
            text = self._stops.feed(piece)
            return (Chunk(text),) if text else ()
        return self._split(piece)

    def _split(self, piece: str) -> Iterator[Chunk]:
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
