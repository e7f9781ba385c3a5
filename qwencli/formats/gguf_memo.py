"""What `gguf.read_model` found in a file, remembered across processes.

Checking a GGUF header walks every string of the vocabulary and the merges: ~25 ms of a one-shot
run at SmolLM2's 49K tokens, ~150 ms at Qwen3.5's 248K, paid again by every `qwen run` of a shell
script. A file that passed is recorded in `QWEN_HOME/gguf-checked/`, keyed by its path and by
each shard's size, modification time and inode; a later process whose files still match reads
the record (a few KB of JSON) instead. Any change to a shard (a new download, a truncation, an
edit) changes its key, and the file is checked in full again. Only files that passed are
recorded; what was read is rebuilt exactly (JSON keeps ints, floats, strings and bools apart).
A record that cannot be read or written (a read-only home, a full disk, a damaged record) only
means checking the file again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gguf import GGUFFile

#: Part of every key: a reader that checks more (or records differently) ignores older records.
FORMAT = 1
_ARRAY = "__array__"


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _record_path(home: Path, path: Path) -> Path:
    return home / "gguf-checked" / (hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest() + ".json")


def recall(home: Path, path: Path) -> tuple[GGUFFile, ...] | None:
    """The files read from `path` (absolute) before, if every one is unchanged since; else None."""
    try:
        record = json.loads(_record_path(home, path).read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("path") != str(path):
            return None
        files = record["files"]
        for entry in files:
            if _stamp(Path(entry["path"])) != entry["stamp"]:
                return None
        return tuple(_file_of(entry) for entry in files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remember(home: Path, path: Path, files: tuple[GGUFFile, ...]) -> None:
    """Record the files read from `path` (absolute), written whole or not at all."""
    try:
        entries = [_entry_of(f) for f in files]
        text = json.dumps({"format": FORMAT, "path": str(path), "files": entries}, ensure_ascii=True)
        target = _record_path(home, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except (OSError, ValueError):
        pass  # nothing recorded: the next run checks the file again


def _entry_of(file: GGUFFile) -> dict[str, Any]:
    return {
        "path": str(file.path),
        "stamp": _stamp(file.path),
        "version": file.version,
        "metadata": {key: _encode(value) for key, value in file.metadata.items()},
        "tensors": [[t.name, list(t.shape), t.ggml_type, t.offset, t.n_bytes] for t in file.tensors],
        "data_offset": file.data_offset,
        "size": file.size,
    }


def _file_of(entry: dict[str, Any]) -> GGUFFile:
    from .gguf import GGUFFile, TensorInfo

    return GGUFFile(
        path=Path(entry["path"]),
        version=entry["version"],
        metadata={key: _decode(value) for key, value in entry["metadata"].items()},
        tensors=tuple(
            TensorInfo(name, tuple(shape), kind, offset, n) for name, shape, kind, offset, n in entry["tensors"]
        ),
        data_offset=entry["data_offset"],
        size=entry["size"],
    )


def _encode(value: Any) -> Any:
    from .gguf import ArraySummary

    if isinstance(value, ArraySummary):
        return {_ARRAY: [value.element_type, value.length]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    from .gguf import ArraySummary

    if isinstance(value, dict):
        element_type, length = value[_ARRAY]
        return ArraySummary(element_type, length)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
