"""Which vision projector goes with a local GGUF model: the one given, else one beside it.

Hubs ship a VL model as two files in one folder, the weights and `mmproj-*.gguf` (Qwen's own
`mmproj-Qwen3VL-8B-Instruct-F16.gguf`, unsloth's `mmproj-BF16.gguf`…); a user who downloaded both
expects `qwen run model.gguf` to see images without naming the second file.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelNotFound


def is_projector_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(".gguf") and "mmproj" in lower


def beside(model: Path) -> Path | None:
    """A projector in `model`'s folder. With several (F16, BF16, F32), the one sharing the
    longest start with the model's name after `mmproj-`, then the smallest file."""
    folder = model.parent
    try:
        found = [p for p in folder.iterdir() if p.is_file() and is_projector_name(p.name) and p != model]
    except OSError:
        return None
    if not found or is_projector_name(model.name):
        return None
    stem = model.name.lower()

    def shared(p: Path) -> int:
        rest = p.name.lower().split("mmproj", 1)[1].lstrip("-_")
        n = 0
        while n < min(len(rest), len(stem)) and rest[n] == stem[n]:
            n += 1
        return n

    return sorted(found, key=lambda p: (-shared(p), p.stat().st_size, p.name))[0]


def given(path: str) -> Path:
    projector = Path(path).expanduser()
    if not projector.is_file():
        raise ModelNotFound(f"no such projector file: {path}", "give the path to the model's mmproj-….gguf")
    return projector
