"""The process's llama.cpp engine thread: calls in FIFO order and, between them, while a batched
model has work, its decode steps.

One thread for every llama.cpp context of the process — chat loads (one-at-a-time or batched),
embedding and rerank loads, their vision projectors — so one OpenMP team does all the compute:
a second thread's team makes libgomp throttle its barriers from then on (see engine_thread.py;
measured on 2 cores: chat decode 123 → 71 t/s after an embedding context computed on a thread
of its own, unchanged when it computed on the chat's thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .engine_thread import _EMPTY, EngineThread


class Stepper:
    """A batched model's place on the engine: `step()` runs while it returns True, woken by `wake()`."""

    def __init__(self, engine: StepEngine, step: Callable[[], bool], on_error: Callable[[BaseException], None]):
        self._engine = engine
        self.step = step
        self.on_error = on_error

    def wake(self) -> None:
        """Start stepping (from any thread)."""
        self._engine._jobs.put((False, lambda: self._engine._activate(self)))


class StepEngine(EngineThread):
    """An engine thread that, whenever no call waits, steps each active `Stepper` in turn."""

    def __init__(self, name: str):
        self._active: list[Stepper] = []
        super().__init__(name)  # starts the thread, which reads the field above

    def stepper(self, step: Callable[[], bool], on_error: Callable[[BaseException], None]) -> Stepper:
        return Stepper(self, step, on_error)

    def _activate(self, stepper: Stepper) -> None:
        if stepper not in self._active:
            self._active.append(stepper)

    def _run(self) -> None:
        active = self._active
        while True:
            job = self._take(block=not active)
            if job is _EMPTY:
                for stepper in list(active):
                    try:
                        more = stepper.step()
                    except BaseException as exc:  # a dead engine thread would hang every stream
                        more = False
                        stepper.on_error(exc)
                    if not more:
                        active.remove(stepper)
                continue
            if job is None:
                return
            job()


_ENGINE: StepEngine | None = None
_ENGINE_LOCK = threading.Lock()


def llama_engine() -> StepEngine:
    """The one llama.cpp engine thread of this process (started on first use, never stopped:
    the OpenMP team it owns lives as long as the process does)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = StepEngine("llama.cpp")
        return _ENGINE
