"""Multiple-choice questions from a local JSONL file (or Parquet), in the shapes the common data sets use.

One JSON object a line (a Parquet row) with a context, its choices and the right one:
- context: `question`, `query`, `context` or `ctx`;
- choices: `choices` (or `endings`, HellaSwag's) as a list of texts, or ARC's `{"text": [...], "label": [...]}`;
- answer: `answer`, `label` or `gold` as the choice's index (an integer, or digits), or `answerKey` /
  a letter matching a choice label (ARC's "B") or the choice's own text.
A line that has none of these is an error naming it: a score over misread data would look real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .rows import read_rows

CONTEXT_FIELDS = ("question", "query", "context", "ctx")
CHOICE_FIELDS = ("choices", "endings")
ANSWER_FIELDS = ("answer", "label", "gold", "answerKey")


@dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    answer: int


def read_questions(path: Path) -> list[Question]:
    """The questions of a JSONL file (or Parquet, or CSV with a header: `rows.read_rows`)."""
    return [_question(row, where) for where, row in read_rows(path)]


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
    if isinstance(choices, tuple):
        choices = list(choices)
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
