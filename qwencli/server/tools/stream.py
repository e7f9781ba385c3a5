"""Tool calls pulled out of a stream of text pieces, whatever the dialect.

Both Qwen dialects open a call with `<tool_call>`; what follows differs (JSON for Hermes, XML
for Qwen3-Coder), so a `Dialect` reads the body and `ToolCallStream` does the rest: it finds
openers (holding back a possible opener that straddles two pieces), hands the dialect what
follows, and keeps the text around calls. Decisions are made only once the text seen so far
settles them, so the output is the same however the reply is split into pieces.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from ...chat import ToolCall
from ...stops import partial_suffix


@dataclass(frozen=True)
class Text:
    text: str


Event = Text | ToolCall


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass(frozen=True)
class Scan:
    """What a dialect made of the text after an opener.

    "wait": not decided yet (the call may still complete). "call": a call, the first `end`
    characters being its body and closing tag. "text": the first `end` characters are no call
    and stay text, opener included.
    """

    status: Literal["wait", "call", "text"]
    end: int = 0
    call: ToolCall | None = None


WAIT = Scan("wait")


class CallReader(Protocol):
    """Reads one call's body; it is given the same body, only ever longer, until it decides,
    so it may resume where it stopped (a long value is not read again for every piece)."""

    def scan(self, body: str, *, final: bool) -> Scan:
        """Read `body`, the text after the opener; `final` when the reply has ended (nothing is
        left to wait for)."""
        ...


class Dialect(Protocol):
    @property
    def openers(self) -> tuple[str, ...]:
        """Texts that start a call; the first one found in the reply wins."""
        ...

    def reader(self, opener: str) -> CallReader:
        """A reader for the call `opener` starts."""
        ...


class ToolCallStream:
    """Text pieces in; text and tool calls out, in order.

    Whitespace between calls is layout: it is held until real text follows and dropped when a
    call follows or the reply ends after calls. A block that does not parse stays text.
    """

    def __init__(self, dialect: Dialect, *, first_only: bool = False):
        self._dialect = dialect
        self._buf = ""
        self._opener: str | None = None
        self._reader: CallReader | None = None
        self._space = ""
        self._first_only = first_only
        self.calls: list[ToolCall] = []

    def feed(self, piece: str) -> Iterator[Event]:
        self._buf += piece
        while self._buf:
            if self._reader is not None:
                scan = self._reader.scan(self._buf, final=False)
                if scan.status == "wait":
                    return
                yield from self._settle(scan)
                continue
            found = self._first_opener()
            if found is not None:
                start, opener = found
                before, self._buf = self._buf[:start], self._buf[start + len(opener) :]
                self._opener, self._reader = opener, self._dialect.reader(opener)
                yield from self._text(before)
                continue
            hold = max(partial_suffix(self._buf, o) for o in self._dialect.openers)
            out = self._buf[: len(self._buf) - hold]
            self._buf = self._buf[len(self._buf) - hold :]
            yield from self._text(out)
            return

    def finish(self) -> Iterator[Event]:
        if self._reader is not None:  # cut off at EOS or by max_tokens
            scan = self._reader.scan(self._buf, final=True)
            if scan.status == "wait":
                scan = Scan("text", len(self._buf))
            yield from self._settle(scan)
        rest, self._buf = self._buf, ""
        yield from self._text(rest)
        if self._space and not self.calls:
            yield Text(self._space)
        self._space = ""

    def _first_opener(self) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for opener in self._dialect.openers:
            at = self._buf.find(opener)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, opener)
        return best

    def _settle(self, scan: Scan) -> Iterator[Event]:
        opener = self._opener or ""
        body, self._buf = self._buf[: scan.end], self._buf[scan.end :]
        self._opener = self._reader = None
        if scan.status == "text" or scan.call is None:
            yield from self._text(opener + body)
            return
        self._space = ""
        if self._first_only and self.calls:
            return
        self.calls.append(scan.call)
        yield scan.call

    def _text(self, text: str) -> Iterator[Event]:
        # Trailing whitespace is held whatever the split of the pieces, so "text <tool_call>"
        # gives the same content streamed token by token as collected.
        if not text:
            return
        body = text.rstrip()
        if not body:
            self._space += text
            return
        lead, self._space = self._space, text[len(body) :]
        yield Text(lead + body)


class CallInReasoning:
    """Reasoning pieces in, `(reasoning, text)` out: from a `<tool_call>` on, reasoning is text.

    Qwen3.5 can open a call before it closes its thinking; llama.cpp ends the reasoning at
    `<tool_call>` as at `</think>` for that reason. A possible opener that straddles two pieces
    is held back, so the cut falls in the same place however the reply is split.
    """

    def __init__(self, opener: str = "<tool_call>"):
        self._opener = opener
        self._held = ""
        self.cut = False

    def feed(self, piece: str) -> tuple[str, str]:
        if self.cut:
            return "", piece
        buf, self._held = self._held + piece, ""
        at = buf.find(self._opener)
        if at >= 0:
            self.cut = True
            return buf[:at].rstrip("\n"), buf[at:]
        # Newlines before a call are layout, so they too wait for what follows.
        hold = partial_suffix(buf, self._opener)
        keep = buf[: len(buf) - hold]
        body = keep.rstrip("\n")
        self._held = keep[len(body) :] + buf[len(buf) - hold :]
        return body, ""

    def finish(self) -> str:
        """What is still held back (the reasoning ended otherwise): reasoning after all."""
        held, self._held = self._held, ""
        return held
