"""Multiple choice, scored the way lm-eval-harness scores its `multiple_choice` tasks.

Each choice is the continuation `" " + choice` of the question's context (lm-eval's default
`target_delimiter`); `acc` takes the choice of highest summed log-probability, `acc_norm` the one
of highest log-probability per character of the choice (`len(choice)`, without the delimiter);
the first of equal values wins (numpy's argmax). The standard errors are lm-eval's
`mean_stderr`: the sample standard deviation over the square root of the count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .datasets import Question
from .scoring import Scorer

TARGET_DELIMITER = " "


@dataclass(frozen=True)
class Answer:
    """One question's outcome: the log-likelihood of each choice and the two predictions."""

    logprobs: tuple[float, ...]
    predicted: int
    predicted_norm: int
    answer: int


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
            "answers": [
                {
                    "logprobs": list(a.logprobs),
                    "predicted": a.predicted,
                    "predicted_norm": a.predicted_norm,
                    "answer": a.answer,
                }
                for a in self.answers
            ],
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


def run_lm_eval(
    scorer: Scorer, questions: Sequence[Question], on_answer: Callable[[int, Answer], None] | None = None
) -> McResult:
    answers = []
    for number, question in enumerate(questions, start=1):
        answer = answer_lm_eval(scorer, question)
        answers.append(answer)
        if on_answer is not None:
            on_answer(number, answer)
    return McResult("lm-eval", tuple(answers))
