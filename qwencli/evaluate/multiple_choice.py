"""Multiple choice, scored the way lm-eval-harness scores its `multiple_choice` tasks.

Each choice is the continuation `" " + choice` of the question's context (lm-eval's default
`target_delimiter`); `acc` takes the choice of highest summed log-probability, `acc_norm` the one
of highest log-probability per character of the choice (`len(choice)`, without the delimiter);
the first of equal values wins (numpy's argmax). The standard errors are lm-eval's
`mean_stderr`: the sample standard deviation over the square root of the count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .datasets import Question
from .scoring import Scorer

STYLE = "lm-eval"
TARGET_DELIMITER = " "


@dataclass(frozen=True)
class Answer:
    """One question's outcome: the log-likelihood of each choice and the two predictions."""

    logprobs: tuple[float, ...]
    predicted: int
    predicted_norm: int
    answer: int

    def to_json(self) -> dict[str, Any]:
        """The question's line in `--json` and in the journal."""
        return {"logprobs": list(self.logprobs), "predicted": self.predicted, "predicted_norm": self.predicted_norm,
                "answer": self.answer}  # fmt: skip

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Answer:
        return cls(tuple(record["logprobs"]), record["predicted"], record["predicted_norm"], record["answer"])


@dataclass(frozen=True)
class McResult:
    style: str
    answers: tuple[Answer, ...]

    @property
    def acc(self) -> float:
        return _mean([a.predicted == a.answer for a in self.answers])

    @property
    def acc_norm(self) -> float:
        return _mean([a.predicted_norm == a.answer for a in self.answers])

    @property
    def acc_stderr(self) -> float:
        return _stderr([a.predicted == a.answer for a in self.answers])

    @property
    def acc_norm_stderr(self) -> float:
        return _stderr([a.predicted_norm == a.answer for a in self.answers])

    def to_json(self) -> dict[str, object]:
        return {
            "style": self.style,
            "questions": len(self.answers),
            "acc": self.acc,
            "acc_stderr": self.acc_stderr,
            "acc_norm": self.acc_norm,
            "acc_norm_stderr": self.acc_norm_stderr,
            "answers": [a.to_json() for a in self.answers],
        }


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _mean(hits: Sequence[bool]) -> float:
    return sum(hits) / len(hits)


def _stderr(hits: Sequence[bool]) -> float:
    n = len(hits)
    if n < 2:
        return float("nan")
    mean = _mean(hits)
    variance = sum((h - mean) ** 2 for h in hits) / (n - 1)
    return math.sqrt(variance / n)


def answer_lm_eval(scorer: Scorer, question: Question) -> Answer:
    logprobs = tuple(scorer.score(question.context, TARGET_DELIMITER + c).logprob for c in question.choices)
    per_char = [lp / len(c) for lp, c in zip(logprobs, question.choices)]
    return Answer(logprobs, _argmax(logprobs), _argmax(per_char), question.answer)


def run_lm_eval(scorer: Scorer, questions: Sequence[Question]) -> McResult:
    return McResult(STYLE, tuple(answer_lm_eval(scorer, q) for q in questions))
