"""Run every call into a native engine on one long-lived thread.

llama.cpp keeps per-thread OpenMP teams: calling it from many threads makes the teams fight
over the cores (llama-cpp-python's server gets slower with 4 clients than with 1). One thread per
loaded model also gives us a FIFO queue of work for free and lets the caller's thread stay
responsive: Ctrl-C lands in the caller, which asks the engine to stop between two tokens.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

_ITEM, _DONE, _ERROR = 0, 1, 2


class EngineThread:
    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the engine thread and return its result (or raise its exception)."""
        done = threading.Event()
        box: list[Any] = [None, None]

        def job() -> None:
            try:
                box[0] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller
                box[1] = exc
            finally:
                done.set()

        self._jobs.put(job)
        done.wait()
        if box[1] is not None:
            raise box[1]
        return box[0]

    def stream(self, produce: Callable[[threading.Event], Iterator[T]]) -> Iterator[T]:
        """Run the generator `produce(cancel)` on the engine thread and yield its items here.

        Closing the returned iterator (or an exception in the consumer, e.g. KeyboardInterrupt)
        sets `cancel` and waits until the producer has stopped, so the engine is free and its
        state consistent when this returns.
        """
        cancel = threading.Event()
        out: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

        def job() -> None:
            try:
                for item in produce(cancel):
                    out.put((_ITEM, item))
            except BaseException as exc:
                out.put((_ERROR, exc))
            else:
                out.put((_DONE, None))

        self._jobs.put(job)
        finished = False
        try:
            while True:
                kind, value = out.get()
                if kind == _ITEM:
                    yield value
                    continue
                finished = True
                if kind == _ERROR:
                    raise value
                return
        finally:
            if not finished:
                cancel.set()
                while out.get()[0] == _ITEM:
                    pass

    def close(self, timeout: float | None = None) -> None:
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
