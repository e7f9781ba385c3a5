"""Where output goes. stdout is for the answer; everything else goes to stderr.

Model text is written raw (a model that writes `[bold]` must not be restyled by Rich); Rich
is used for our own messages on stderr only, and only colours them on a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .chat import Chunk, Completion, Usage
from .sizes import human_size as human_size  # the CLI's size formatter; models/ imports it from .sizes
from .stderr import notice, stderr_console  # noqa: F401 - notice is part of this module's API

DIM, RESET = "\x1b[2m", "\x1b[0m"


class OutputClosed(Exception):
    """stdout went away (`qwen run … | head -n 1`): stop generating and exit quietly."""


def warn(message: str) -> None:
    stderr_console().print(f"warning: {message}", style="yellow", markup=False)


def error(message: str, hint: str | None = None) -> None:
    console = stderr_console()
    console.print(f"Error: {message}", style="bold red", markup=False)
    if hint:
        console.print(f"hint: {hint}", style="dim", markup=False)


class AnswerWriter:
    """Streams chunks to stdout. Reasoning: dimmed on a terminal; on a pipe, stderr or nowhere."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        show_thinking: bool = False,
        err: TextIO | None = None,
        color: bool | None = None,
    ):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.tty = _isatty(self.out)
        self.color = self.tty and "NO_COLOR" not in os.environ if color is None else color
        self.show_thinking = show_thinking
        self._in_reasoning = False
        self._wrote_reasoning = False
        self._last = "\n"

    def write(self, chunk: Chunk) -> None:
        if not chunk.text:
            return
        if chunk.kind == "reasoning":
            if self.tty:
                if not self._in_reasoning and self.color:
                    self._emit(DIM)
                self._in_reasoning = True
                self._wrote_reasoning = True
                self._emit(chunk.text)
            elif self.show_thinking:
                self.err.write(chunk.text)
                self.err.flush()
                self._wrote_reasoning = True
            return
        if self._in_reasoning:
            self._emit((RESET if self.color else "") + "\n\n")
            self._in_reasoning = False
        elif self._wrote_reasoning and not self.tty and self.show_thinking:
            self.err.write("\n")
            self._wrote_reasoning = False
        self._emit(chunk.text)
        self._last = chunk.text

    def finish(self) -> None:
        """End the answer with one newline, whatever the model did."""
        if self._in_reasoning:
            self._emit((RESET if self.color else "") + "\n")
            self._in_reasoning = False
            self._last = "\n"
        if not self._last.endswith("\n"):
            self._emit("\n")
            self._last = "\n"

    def _emit(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            _silence_stdout()
            raise OutputClosed() from None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _silence_stdout() -> None:
    # Python would complain again when it flushes stdout at exit; point fd 1 at /dev/null.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def table(rows: Sequence[Sequence[str]]) -> str:
    """Plain columns for stdout (`qwen list`, `qwen ps`): the first row is the header; two spaces
    between columns; each line ends in a newline. No Rich, so a pipe gets the same text."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n" for row in rows)


def counted(n: int, noun: str) -> str:
    """`1 model`, `2 models`."""
    return f"{n} {noun}{'s' if n != 1 else ''}"


def stats_line(completion: Completion, load_seconds: float | None = None) -> str:
    usage: Usage = completion.usage
    t = completion.timings
    rates = t.rates(usage)
    parts = []
    if load_seconds is not None:
        parts.append(f"load {load_seconds:.2f} s")
    parts.append(f"first token {t.first_token_seconds:.2f} s")
    evaluated = usage.prompt_tokens - usage.cached_tokens
    cached = f", {usage.cached_tokens} cached" if usage.cached_tokens else ""
    parts.append(f"prompt {evaluated} tokens{cached} {rates['prompt_tokens_per_second']:.1f} t/s")
    if usage.image_tokens:
        each = " + ".join(str(n) for n in usage.image_tokens)
        parts.append(f"{len(usage.image_tokens)} image{'s' if len(usage.image_tokens) > 1 else ''} {each} tokens")
    parts.append(f"generation {usage.completion_tokens} tokens {rates['generation_tokens_per_second']:.1f} t/s")
    if t.threads:
        parts.append(f"{t.threads} CPU threads (the CPU was busy)")
    return " · ".join(parts)
