"""Multiple-choice questions from a local JSONL file, in the shapes the common data sets use.

One JSON object a line with a context, its choices and the right one:
- context: `question`, `query`, `context` or `ctx`;
- choices: `choices` (or `endings`, HellaSwag's) as a list of texts, or ARC's `{"text": [...], "label": [...]}`;
- answer: `answer`, `label` or `gold` as the choice's index (an integer, or digits), or `answerKey` /
  a letter matching a choice label (ARC's "B") or the choice's own text.
A line that has none of these is an error naming it: a score over misread data would look real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

CONTEXT_FIELDS = ("question", "query", "context", "ctx")
CHOICE_FIELDS = ("choices", "endings")
ANSWER_FIELDS = ("answer", "label", "gold", "answerKey")


@dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    answer: int


def read_questions(path: Path) -> list[Question]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    questions = list(_questions(path))
    if not questions:
        raise UsageError(f"{path}: no questions in it")
    return questions


def _questions(path: Path) -> Iterator[Question]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                row = json.loads(line)
            except ValueError:
                raise UsageError(f"{where}: not JSON") from None
            if not isinstance(row, dict):
                raise UsageError(f"{where}: not a JSON object")
            yield _question(row, where)


def _first(row: dict[str, Any], fields: tuple[str, ...], where: str, what: str) -> Any:
    for name in fields:
        if name in row:
            return row[name]
    raise UsageError(f"{where}: no {what} (one of {', '.join(fields)})")


def _question(row: dict[str, Any], where: str) -> Question:
    context = _first(row, CONTEXT_FIELDS, where, "context")
    choices = _first(row, CHOICE_FIELDS, where, "choices")
    labels: list[str] = []
    if isinstance(choices, dict):  # ARC: {"text": [...], "label": ["A", "B", ...]}
        labels = [str(label) for label in choices.get("label", [])]
        choices = choices.get("text")
    if not isinstance(context, str) or not isinstance(choices, list) or len(choices) < 2:
        raise UsageError(f"{where}: the context must be text and the choices a list of at least two texts")
    if not all(isinstance(c, str) and c for c in choices):
        raise UsageError(f"{where}: every choice must be a non-empty text")
    answer = _first(row, ANSWER_FIELDS, where, "answer")
    index = _answer_index(answer, choices, labels)
    if index is None:
        raise UsageError(f"{where}: the answer {answer!r} is not one of the {len(choices)} choices")
    return Question(context, tuple(choices), index)


def _answer_index(answer: Any, choices: list[str], labels: list[str]) -> int | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, str):
        if answer in labels:
            return labels.index(answer)
        if answer.isdigit():
            answer = int(answer)
        elif answer in choices:
            return choices.index(answer)
        elif len(answer) == 1 and answer.isalpha():
            answer = ord(answer.upper()) - ord("A")
    if isinstance(answer, int) and 0 <= answer < len(choices):
        return answer
    return None
