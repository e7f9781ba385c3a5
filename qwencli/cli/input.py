"""The prompt of a one-shot run: stdin first, then the arguments (as Ollama does)."""

from __future__ import annotations

import sys

from ..console import warn
from ..errors import UsageError


def read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        warn(f"stdin is not valid UTF-8 (first bad byte at {exc.start}); undecodable bytes were replaced")
        return data.decode("utf-8", errors="replace")


def read_prompt(words: list[str] | None) -> str:
    parts = []
    if not sys.stdin.isatty():
        piped = read_stdin()
        if piped.strip():
            parts.append(piped.rstrip("\n"))
    if words:
        parts.append(" ".join(words))
    if not parts:
        raise UsageError("no prompt: give one after the model name or pipe it on stdin")
    return "\n\n".join(parts)
