"""A run's finished questions, one JSON line each, so an interrupted run resumes where it stopped.

The first line is the header: what the run measures (command, model, task, style, data, …). A
journal is reopened only by the run it was written for: any other header is refused, naming the
fields that differ, since results of two set-ups mixed in one file would look like one result.
Every record is written whole and flushed (and fsynced) before the next question starts; a line
torn by a kill in mid-write is cut off when the journal is reopened. Nothing here knows what a
question is: `qwen eval gen` and `qwen eval mc` both key their records by a question id.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from ..errors import UsageError

T = TypeVar("T")

VERSION = 1


class Journal:
    def __init__(self, path: Path, header: dict[str, Any], done: dict[str, dict[str, Any]], out: TextIO):
        self.path = path
        self.header = header
        #: The records already in the journal, by question id, in the order they were written.
        self.done = done
        self._out = out

    @classmethod
    def open(cls, path: Path, header: Mapping[str, Any]) -> Journal:
        header = {"journal": VERSION, **header}
        path.parent.mkdir(parents=True, exist_ok=True)
        done: dict[str, dict[str, Any]] = {}
        good = _read(path, header, done) if path.exists() and path.stat().st_size > 0 else 0
        if good:
            with path.open("r+b") as f:  # drop a torn last line
                f.truncate(good)
            out = path.open("a", encoding="utf-8")
        else:
            out = path.open("w", encoding="utf-8")
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            _sync(out)
        return cls(path, header, done, out)

    def record(self, question: str, result: Mapping[str, Any]) -> None:
        entry = {"id": question, **result}
        self._out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        _sync(self._out)
        self.done[question] = entry

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_path(header: Mapping[str, Any], *name_parts: str, directory: Path | None = None) -> Path:
    """A per-run file under qwencli's own directory (`$QWEN_HOME/eval`): readable parts, and a
    digest of the header, so another set-up gets another file and the same one finds its own."""
    if directory is None:
        from .. import settings

        directory = settings.load().home / "eval"
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:10]
    slug = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("_")[:40] for part in name_parts if part)
    return directory / f"{slug}-{digest}.jsonl"


def data_sha256(path: Path) -> str:
    """What pins a run's data in its header: a file's sha256, or a folder's (OpenCompass's data
    sets are folders) over its files' relative paths and contents, in sorted order."""
    digest = hashlib.sha256()
    try:
        if not path.is_dir():
            return hashlib.sha256(path.read_bytes()).hexdigest()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename or path}: {exc.strerror}") from None
    return digest.hexdigest()


def model_identity(model: str, host: str | None) -> str:
    """The model as a journal's header names it: a local file by its absolute path (the same file
    from another directory is the same run), a name as given, a server's model with its address."""
    if host is None and Path(model).is_file():
        return str(Path(model).resolve())
    return f"{model}@{host}" if host else model


def note(message: str) -> None:
    """A line about the run (the journal's path, the resume hint) on stderr: stdout is the result."""
    from ..stderr import stderr_console

    stderr_console().print(message, markup=False, highlight=False)


def run_resumably(log: Journal, ids: Callable[[], Sequence[str]], run: Callable[[], T]) -> T:
    """`run()` over a journal, as `qwen eval gen` and `mc` both do: say where the journal is and
    what it already holds; on Ctrl-C, say how much is kept and how to resume, then let it go on."""
    note(f"journal: {log.path} ({len(log.done)} done; the same command again resumes it)")
    try:
        return run()
    except KeyboardInterrupt:
        questions = ids()
        note("\n" + resume_hint(log.path, sum(q in log.done for q in questions), len(questions)))
        raise


def resume_hint(path: Path, done: int, total: int) -> str:
    """What Ctrl-C leaves on stderr."""
    return f"interrupted: {done} of {total} questions are in {path}; run the same command again to resume"


def _read(path: Path, header: dict[str, Any], done: dict[str, dict[str, Any]]) -> int:
    """Fill `done` from the journal; the byte offset after its last whole line."""
    good = 0
    with path.open("rb") as f:
        first = f.readline()
        written = _parse(first)
        if written is None or "journal" not in written:
            raise UsageError(f"{path} is not a qwen eval journal", "give another --journal")
        if not first.endswith(b"\n"):  # the header itself was torn: start over under this one
            return 0
        _check_header(path, written, header)
        good = len(first)
        for line in f:
            entry = _parse(line) if line.endswith(b"\n") else None
            if entry is None or not isinstance(entry.get("id"), str):
                break
            done[entry["id"]] = entry
            good += len(line)
    return good


def _check_header(path: Path, written: dict[str, Any], header: dict[str, Any]) -> None:
    differ = [k for k in sorted(set(written) | set(header)) if written.get(k) != header.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {written.get(k)!r} there, {header.get(k)!r} now" for k in differ[:4])
        raise UsageError(
            f"{path} was written for another run ({shown})",
            "give another --journal, or delete that file to start over",
        )


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _sync(out: TextIO) -> None:
    out.flush()
    os.fsync(out.fileno())
