"""Split `<think>…</think>` reasoning from the answer in a stream of text pieces.

The tags may straddle two pieces (`</thi` + `nk>`), so text that could still become a tag is
held back until the next piece decides it. Qwen writes `<think>\\nreasoning\\n</think>\\n\\nanswer`;
the newlines around the tags are layout, not content, and are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from .chat import Chunk, ReasoningEffort
from .stops import partial_suffix

OPEN, CLOSE = "<think>", "</think>"
Mode = Literal["detect", "reasoning", "text"]
EFFORTS: tuple[ReasoningEffort, ...] = ("none", "minimal", "low", "medium", "high")


def initial_mode(supports_thinking: bool, generation_prefix: str) -> Mode:
    """Where a reply starts, given what the template put after `<|im_start|>assistant`."""
    if not supports_thinking:
        return "text"
    tail = generation_prefix.rstrip()
    # QwQ, 2507 Thinking and Qwen3.5+ (thinking on: "<think>\n") pre-fill the opening tag.
    if tail.endswith(OPEN):
        return "reasoning"
    # Qwen3 and Qwen3.5+ with thinking off pre-fill an empty block ("<think>\n\n</think>\n\n").
    if tail.endswith(CLOSE):
        return "text"
    return "detect"


#: What a model's template does with thinking: "switch" (Qwen3, Qwen3.5+), "always" (2507
#: Thinking, QwQ), "never" (2507 Instruct, Qwen2.5, Coder).
ThinkingControl = Literal["switch", "always", "never"]


def effort_thinks(effort: ReasoningEffort) -> bool:
    """Qwen3.8's mapping, for templates that take only `enable_thinking`."""
    return effort in ("medium", "high")


def asked_to_think(
    think: bool | None, effort: ReasoningEffort | None, without_levels: bool | None = None
) -> bool | None:
    """What the user asked for: on, off, or nothing (the template's default). `without_levels`:
    what a level means where the template has none (`GenerationOptions.think_without_levels`)."""
    if think is not None:
        return think
    if effort is None:
        return None
    return without_levels if without_levels is not None else effort_thinks(effort)


def unchangeable(control: ThinkingControl, asked: bool | None) -> str | None:
    """Why the model will not do as asked, for a note; None when it will (or nothing was asked)."""
    if asked is True and control == "never":
        return "it does not think (its chat template has no thinking mode), so the answer comes without"
    if asked is False and control == "always":
        return "it always thinks (its chat template has no switch to turn that off)"
    return None


class ThinkingSplitter:
    def __init__(self, mode: Mode = "detect"):
        self.mode: Mode = mode
        self._buf = ""
        self._reasoning_started = False
        self._strip_text_start = False

    @property
    def passing(self) -> bool:
        """In the answer with nothing held back: a piece goes through as it is."""
        return self.mode == "text" and not self._buf and not self._strip_text_start

    def feed(self, piece: str) -> Iterator[Chunk]:
        self._buf += piece
        while self._buf:
            if self.mode == "detect":
                head = self._buf.lstrip()
                if head.startswith(OPEN):
                    self._buf = head[len(OPEN) :]
                    self.mode = "reasoning"
                    continue
                if not head or OPEN.startswith(head):
                    return  # may still become "<think>"
                self.mode = "text"
                continue
            if self.mode == "reasoning":
                if not self._reasoning_started:
                    self._buf = self._buf.lstrip("\n")
                    if not self._buf:
                        return
                    self._reasoning_started = True
                end = self._buf.find(CLOSE)
                if end >= 0:
                    body = self._buf[:end].rstrip("\n")
                    self._buf = self._buf[end + len(CLOSE) :]
                    self.mode = "text"
                    self._strip_text_start = True
                    if body:
                        yield Chunk(body, kind="reasoning")
                    continue
                hold = partial_suffix(self._buf, CLOSE)
                body = self._buf[: len(self._buf) - hold]
                # Trailing newlines may be the layout before `</think>`: hold them too.
                kept = body.rstrip("\n")
                hold += len(body) - len(kept)
                if kept:
                    yield Chunk(kept, kind="reasoning")
                self._buf = self._buf[len(kept) :]
                return
            # text
            if self._strip_text_start:
                self._buf = self._buf.lstrip("\n")
                if not self._buf:
                    return
                self._strip_text_start = False
            out, self._buf = self._buf, ""
            yield Chunk(out)

    def flush(self) -> Iterator[Chunk]:
        """End of stream: whatever is held back is content after all."""
        rest, self._buf = self._buf, ""
        if not rest:
            return
        if self.mode == "reasoning":
            rest = rest.rstrip("\n")
            if rest:
                yield Chunk(rest, kind="reasoning")
        elif not (self._strip_text_start and not rest.strip("\n")):
            yield Chunk(rest.lstrip("\n") if self._strip_text_start else rest)
