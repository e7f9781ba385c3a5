"""The prompt of a one-shot run: stdin first, then the arguments (as Ollama does)."""

from __future__ import annotations

import sys

from ..chat import Image
from ..console import warn
from ..errors import UsageError


def read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        warn(f"stdin is not valid UTF-8 (first bad byte at {exc.start}); undecodable bytes were replaced")
        return data.decode("utf-8", errors="replace")


def read_prompt(words: list[str] | None, *, stdin: bool = True) -> str:
    """`stdin`: False when stdin carried an image (`--image -`), so only the arguments are the prompt."""
    parts = []
    if stdin and not sys.stdin.isatty():
        piped = read_stdin()
        if piped.strip():
            parts.append(piped.rstrip("\n"))
    if words:
        parts.append(" ".join(words))
    if not parts:
        raise UsageError("no prompt: give one after the model name or pipe it on stdin")
    return "\n\n".join(parts)


def read_images(paths: list[str], words: list[str] | None) -> tuple[Image, ...]:
    """The `--image` files, checked now, before a model loads; `-` is stdin's bytes."""
    from pathlib import Path

    from ..images import image_from_bytes, image_from_file

    if paths.count("-") > 1:
        raise UsageError("--image - reads stdin, which holds one image: give it once")
    if "-" in paths and not words:
        raise UsageError("--image - reads the image from stdin, so the prompt must be an argument")
    return tuple(
        image_from_bytes(sys.stdin.buffer.read(), "stdin") if p == "-" else image_from_file(Path(p)) for p in paths
    )
