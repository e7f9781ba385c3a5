"""`qwen eval mc`'s driver: each question scored and journaled before the next starts, and the
result rebuilt from the journal's records, so a resumed run's numbers are an uninterrupted one's.

A style gives three things (`McTask`): its questions, how to score one (an `Answer` or a
`Scored`, whose `to_json` is the journal record: every choice's score, the pick, the right one,
MMLU's subject) and how to make the result of all the records. Question ids are positions in
the data's order; the journal's header pins the data by its sha256, so a position names one
question.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .generation import Progress
from .journal import Journal
from .scoring import Scorer


class Outcome(Protocol):
    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class McTask:
    items: Sequence[Any]
    score: Callable[[Any], Outcome]
    #: The result (`McResult` or `TaskResult`) of every question's record, in question order.
    result: Callable[[list[dict[str, Any]]], Any]

    def ids(self) -> list[str]:
        return [str(i) for i in range(len(self.items))]


def mc_task(style: str, task: str | None, items: Sequence[Any], scorer: Scorer, shots: dict[Any, Any]) -> McTask:
    """The questions of one style and task (as `qwen eval mc` names them), over `scorer`."""
    if style == "lm-eval":
        from .multiple_choice import STYLE, Answer, McResult, answer_lm_eval

        return McTask(items, lambda q: answer_lm_eval(scorer, q),
                      lambda rs: McResult(STYLE, tuple(Answer.from_json(r) for r in rs)))  # fmt: skip
    from .mc_result import Scored

    name = task or ""
    if style == "opencompass":
        from . import opencompass

        if name == "winogrande":
            score: Callable[[Any], Outcome] = lambda q: opencompass.score_blank(scorer, q, shots[None])  # noqa: E731
        else:
            score = lambda q: opencompass.score_choice4(scorer, name, q, shots)  # noqa: E731
        return McTask(items, score, lambda rs: opencompass.result(name, [Scored.from_json(r) for r in rs]))
    from . import llamacpp_tasks

    return McTask(items, lambda item: llamacpp_tasks.score_item(scorer, item),
                  lambda rs: llamacpp_tasks.result(name, [Scored.from_json(r) for r in rs]))  # fmt: skip


def run(task: McTask, journal: Journal, progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic) -> Any:  # fmt: skip
    ids = task.ids()
    pending = [i for i, q in enumerate(ids) if q not in journal.done]
    if progress is not None:
        progress.start(len(ids), len(ids) - len(pending))
    try:
        for index in pending:
            started = clock()
            record = task.score(task.items[index]).to_json()
            record["seconds"] = round(clock() - started, 3)
            journal.record(ids[index], record)
            if progress is not None:
                progress.advance(record)
    finally:
        if progress is not None:
            progress.stop()
    return task.result([journal.done[q] for q in ids])
