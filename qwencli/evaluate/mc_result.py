"""What `--style opencompass` and `--style llama.cpp` produce: each question's scores, the choice
they pick and the right one, and the accuracy (over groups first when there are groups: MMLU's
subjects, as OpenCompass averages them). The style and the task travel with the numbers, so
`qwen eval compare` can refuse to set one style's numbers beside another's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scored:
    #: One number a choice, in the style's own terms (`score_kind` says which).
    scores: tuple[float, ...]
    predicted: int
    answer: int
    group: str | None = None

    @property
    def right(self) -> bool:
        return self.predicted == self.answer

    def to_json(self) -> dict[str, Any]:
        """The question's line in `--json` and in the journal (NaN scores stay NaN: Python's
        json writes and reads them)."""
        out: dict[str, Any] = {"scores": list(self.scores), "predicted": self.predicted, "answer": self.answer}
        return out | ({"subject": self.group} if self.group is not None else {})

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Scored:
        return cls(tuple(record["scores"]), record["predicted"], record["answer"], record.get("subject"))


@dataclass(frozen=True)
class TaskResult:
    style: str
    task: str
    #: "ppl" (OpenCompass's mean NLL of the whole prompt: lowest wins), "loglikelihood" (summed
    #: log-prob of the continuation: highest wins), "mean_logprob" (llama-perplexity's token mean).
    score_kind: str
    scored: tuple[Scored, ...]

    @property
    def questions(self) -> int:
        return len(self.scored)

    @property
    def correct(self) -> int:
        return sum(s.right for s in self.scored)

    def groups(self) -> dict[str, float]:
        by_group: dict[str, list[bool]] = {}
        for s in self.scored:
            if s.group is not None:
                by_group.setdefault(s.group, []).append(s.right)
        return {name: sum(hits) / len(hits) for name, hits in sorted(by_group.items())}

    @property
    def acc(self) -> float:
        groups = self.groups()
        if groups:
            return sum(groups.values()) / len(groups)
        return self.correct / self.questions

    @property
    def acc_stderr(self) -> float:
        """llama-perplexity's ±: sqrt(p (1 - p) / (n - 1)) over the questions."""
        n = self.questions
        if n < 2:
            return math.nan
        p = self.correct / n
        return math.sqrt(p * (1 - p) / (n - 1))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "style": self.style,
            "task": self.task,
            "questions": self.questions,
            "correct": self.correct,
            "acc": self.acc,
            "acc_stderr": self.acc_stderr,
            "score_kind": self.score_kind,
        }
        groups = self.groups()
        if groups:
            out["subjects"] = groups
        out["answers"] = [s.to_json() for s in self.scored]
        return out


def first_max(values: Sequence[float]) -> int:
    """The first of the highest (llama.cpp's strict `>` scan, Python's `index(max(...))`)."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


def first_min(values: Sequence[float]) -> int:
    best = 0
    for i, value in enumerate(values):
        if value < values[best]:
            best = i
    return best
