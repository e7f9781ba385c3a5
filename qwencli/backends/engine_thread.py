"""Run every call into a native engine on one long-lived thread.

llama.cpp keeps per-thread OpenMP teams: calling it from many threads makes the teams fight
over the cores (llama-cpp-python's server gets slower with 4 clients than with 1), and once a
second thread's team exists libgomp throttles its barrier spinning for good (more threads than
cores), so decode stays ~30 % slower. All llama.cpp work of a process therefore goes to one
thread (`step_engine.llama_engine`). The thread also gives us a FIFO queue of work for free and
lets the caller's thread stay responsive: Ctrl-C lands in the caller, which asks the engine to
stop between two tokens.

A stream (a reply's token loop) holds the thread for as long as it runs; `call_between` work
(another context's short job: an embedding, a rerank score) runs between two of its tokens,
where the stream calls `between()`, instead of waiting for the whole reply.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_ITEM, _DONE, _ERROR = 0, 1, 2
_EMPTY: Any = object()
#: How often an iterating consumer collects a running stream's items (see EngineStream): ~50 looks a
#: second, a delay no reader of a terminal sees, during which a fast model's tokens pile up.
PACE = 0.02
Job = Callable[[], None] | None  # None stops the thread


class EngineThread:
    def __init__(self, name: str):
        # (may run between a stream's tokens, job)
        self._jobs: queue.SimpleQueue[tuple[bool, Job]] = queue.SimpleQueue()
        # Jobs that arrived while a stream ran and had to wait for it: first after it, in order.
        self._later: collections.deque[Job] = collections.deque()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._take(block=True)
            if job is None:
                return
            job()

    def _take(self, *, block: bool) -> Job:
        """The next job in order (`_EMPTY` if there is none and `block` is false)."""
        if self._later:
            return self._later.popleft()
        try:
            return (self._jobs.get() if block else self._jobs.get_nowait())[1]
        except queue.Empty:
            return _EMPTY

    def between(self) -> None:
        """On the engine thread, between two tokens of a running stream: run the `call_between`
        jobs waiting now; anything else waits until the stream is done."""
        jobs = self._jobs
        while not jobs.empty():
            try:
                soon, job = jobs.get_nowait()
            except queue.Empty:
                return
            if soon and job is not None:
                job()
            else:
                self._later.append(job)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the engine thread, after the work before it, and return its result (or
        raise its exception)."""
        return self._call(False, fn, *args, **kwargs)

    def call_between(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call`, but `fn` may also run between two tokens of a stream that holds the thread:
        for short work that touches nothing a stream uses (another llama.cpp context, a
        vocabulary)."""
        return self._call(True, fn, *args, **kwargs)

    def _call(self, soon: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if threading.current_thread() is self._thread:  # already here (a job calling in): no queue
            return fn(*args, **kwargs)
        done = threading.Event()
        box: list[Any] = [None, None]

        def job() -> None:
            try:
                box[0] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller
                box[1] = exc
            finally:
                done.set()

        self._jobs.put((soon, job))
        done.wait()
        if box[1] is not None:
            raise box[1]
        return box[0]

    def stream(self, produce: Callable[[threading.Event], Iterator[T]]) -> EngineStream[T]:
        """The items of the generator `produce(cancel)`, run on the engine thread (see EngineStream)."""

        def drive(cancel: threading.Event, emit: Callable[[T], None]) -> None:
            for item in produce(cancel):
                emit(item)

        return EngineStream(self._jobs, drive)

    def emitting(self, drive: Callable[[threading.Event, Callable[[T], None]], None]) -> EngineStream[T]:
        """The items `drive(cancel, emit)` emits, run on the engine thread: one generator frame
        per item less than `stream`, for the token loops."""
        return EngineStream(self._jobs, drive)

    def close(self, timeout: float | None = None) -> None:
        self._jobs.put((False, None))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class EngineStream(Iterator[T]):
    """Items produced on the engine thread, consumed in one of two ways:

    - iterated, like a generator: the items cross to the iterating thread, paced (below).
      Closing the iterator (or an exception in the consumer, e.g. KeyboardInterrupt, or dropping
      it) sets `cancel` and waits until the producer has stopped, so the engine is free and its
      state consistent when `close()` returns;
    - or `push_to(on_item, on_end)`: the engine thread calls `on_item` itself for each item and
      `on_end` once the producer has stopped. The server uses this to hand tokens straight to its
      event loop, one thread hop (and one GIL hand-over) less per token than iterating.

    Nothing runs before the first `next()` or `push_to()`.

    Iterating is paced as the server's hand-over is (server/generation.py): waking the consumer
    per token is a syscall, and the woken thread takes the GIL and a core while llama.cpp's
    threads want them (on 2 cores, a few per cent of a tiny model's decode). So an item is only
    appended; while items keep coming, the consumer collects them every `PACE` seconds and the
    producer never wakes it. The first item, the end, and an item after a lull (a nap found
    nothing) wake it at once.
    """

    def __init__(
        self, jobs: queue.SimpleQueue[tuple[bool, Job]], drive: Callable[[threading.Event, Callable[[T], None]], None]
    ):
        self._jobs = jobs
        self._drive = drive
        self._cancel = threading.Event()
        self._out = _Handover()  # iterating only
        self._started = False
        self._finished = False  # the consumer has seen the end (iterating only)

    def _start(self, on_item: Callable[[T], None], on_end: Callable[[BaseException | None], None]) -> None:
        if self._started:
            raise RuntimeError("an engine stream can be consumed only once")
        self._started = True

        drive, cancel = self._drive, self._cancel  # not `self`: dropping it must stop the job

        def job() -> None:
            try:
                drive(cancel, on_item)
            except BaseException as exc:
                on_end(exc)
            else:
                on_end(None)

        self._jobs.put((False, job))

    def push_to(self, on_item: Callable[[T], None], on_end: Callable[[BaseException | None], None]) -> None:
        """Have the engine thread deliver the items (see the class docstring); `cancel()` stops it."""
        self._finished = True  # nothing for close() to drain
        self._start(on_item, on_end)

    def cancel(self) -> None:
        """Ask the producer to stop at its next check (from any thread); does not wait."""
        self._cancel.set()

    def __iter__(self) -> EngineStream[T]:
        return self

    def __next__(self) -> T:
        if not self._started:
            out = self._out  # not `self`: dropping the stream must stop the job
            self._start(
                lambda item: out.put(_ITEM, item),
                lambda exc: out.put(_DONE, None) if exc is None else out.put(_ERROR, exc),
            )
        if self._finished:
            raise StopIteration
        try:
            kind, value = self._out.take()
        except BaseException:  # interrupted while waiting: stop the producer before leaving
            self.close()
            raise
        if kind == _ITEM:
            return value
        self._finished = True
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        if not self._started or self._finished:
            self._finished = True
            return
        self._cancel.set()
        while self._out.take()[0] == _ITEM:
            pass
        self._finished = True

    def __del__(self) -> None:  # like a generator: dropping it half-read stops the producer
        try:
            self.close()
        except Exception:
            pass


class _Handover:
    """An iterated stream's items, from the engine thread to the consumer, paced (EngineStream)."""

    __slots__ = ("_items", "_arrived", "_pacing")

    def __init__(self) -> None:
        self._items: collections.deque[tuple[int, Any]] = collections.deque()
        self._arrived = threading.Event()  # set by the producer when the consumer must look now
        self._pacing = False  # items are flowing: the consumer naps PACE, the producer need not wake it

    def put(self, kind: int, value: Any) -> None:
        """On the engine thread: hand an item over; wake the consumer unless it is pacing.
        (Append first, then read `_pacing`: the consumer clears it, then looks again.)"""
        self._items.append((kind, value))
        if kind != _ITEM or not self._pacing:
            self._arrived.set()

    def take(self) -> tuple[int, Any]:
        """The next (kind, value), waiting for it."""
        items, arrived = self._items, self._arrived
        while True:
            if items:
                self._pacing = True
                return items.popleft()
            arrived.clear()
            if items:
                continue
            if not self._pacing:
                arrived.wait()
            elif not arrived.wait(PACE) and not items:
                self._pacing = False  # a lull: the next item wakes us (looked again above)
