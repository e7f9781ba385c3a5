"""The engine thread of a batched model: calls in FIFO order and, between them, while there is
work, decode steps. One thread for everything, so no two OpenMP teams fight over the cores."""

from __future__ import annotations

import queue
from collections.abc import Callable

from .engine_thread import EngineThread


class StepEngine(EngineThread):
    """The engine thread of a batched model: calls in FIFO order, and between them, while there
    is work, decode steps."""

    def __init__(self, name: str):
        self.step: Callable[[], bool] = lambda: False
        self.on_step_error: Callable[[BaseException], None] = lambda exc: None
        self._stepping = False
        super().__init__(name)  # starts the thread, which reads the fields above

    def _run(self) -> None:
        while True:
            if self._stepping:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    try:
                        self._stepping = self.step()
                    except BaseException as exc:  # a dead engine thread would hang every stream
                        self._stepping = False
                        self.on_step_error(exc)
                    continue
            else:
                job = self._jobs.get()
            if job is None:
                return
            job()

    def wake(self) -> None:
        """Start stepping (from any thread)."""
        self._jobs.put(self._start_stepping)

    def _start_stepping(self) -> None:
        self._stepping = True
