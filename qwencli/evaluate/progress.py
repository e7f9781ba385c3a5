"""A run's progress on stderr, question by question: done/total and an ETA.

On a terminal, Rich's bar (transient: the result follows it on stdout); otherwise one plain line a
question, since questions are slow enough that a log of them is what a user tails. The ETA counts
only this session's questions, so a resumed run does not look faster than it is.
"""

from __future__ import annotations

import time
from typing import Any


class QuestionProgress:
    def __init__(self, label: str):
        from ..stderr import stderr_console

        self.label = label
        self._console = stderr_console()
        self._bar: Any = None

    def start(self, total: int, done: int) -> None:
        self.total, self.done, self._new, self._started = total, done, 0, time.monotonic()
        if self._console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=self._console, transient=True)  # fmt: skip
            self._bar.start()
            self._id = self._bar.add_task(self.label, total=total, completed=done)

    def advance(self, record: object = None) -> None:
        self.done += 1
        self._new += 1
        if self._bar is not None:
            self._bar.advance(self._id)
            return
        left = (time.monotonic() - self._started) / self._new * (self.total - self.done)
        self._console.print(f"{self.label} {self.done}/{self.total}, ETA {clock(left)}", markup=False)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
