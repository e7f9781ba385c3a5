r"""Paths to image files typed in a REPL message, attached as `ollama run` attaches them.

A word of the message (quoted, or with `\ ` for spaces) that ends in an image suffix and names an
existing file becomes an attachment and leaves the text; anything else stays as typed, so a path
to a file that does not exist, or to a text file, reaches the model as words.
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_WORD = re.compile(r"""'([^']+)'|"([^"]+)"|((?:\\ |[^\s'"])+)""")
#: Punctuation that ends a sentence around a path ("what is in ~/cat.png?") and is not part of it.
_TRAILING = "?!,;:)."


def image_paths(text: str) -> list[tuple[str, Path]]:
    """(the text as typed, the file) for each image path in `text`, in order."""
    found = []
    for match in _WORD.finditer(text):
        quoted = match.group(1) or match.group(2)
        typed = match.group(0) if quoted else match.group(3).rstrip(_TRAILING)
        raw = quoted or typed.replace("\\ ", " ")
        if not raw.lower().endswith(IMAGE_SUFFIXES):
            continue
        path = Path(raw).expanduser()
        if path.is_file():
            found.append((typed, path))
    return found


def without(text: str, typed: list[str]) -> str:
    """`text` with each typed path taken out once, its surrounding spaces tidied."""
    for word in typed:
        text = text.replace(word, "", 1)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
