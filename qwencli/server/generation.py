"""One request's generation: produced off the event loop, consumed on it.

A backend stream blocks between tokens, so it must never run on the event loop (`/health`
and `/v1/models` answer while a model is busy). Each request starts on a worker thread, which
builds the stream (rendering the prompt may take a while) and calls its `push_to`: a local
engine's `EngineStream` then hands each chunk over from the engine thread itself and the worker
leaves; any other stream (remote, batched) is pulled by the worker inside `push_to`.

Handing over is where serving costs tokens/s, so it is paced. Waking the event loop is a
syscall, and the woken loop takes the GIL (and a core) while the engine wants them back for
the next token: per token, on 2 cores, that cost 5–8 % of generation speed (`make
bench-serve`). So a chunk is only appended to a deque. While chunks keep coming, the loop
collects them on a timer every `PACE` seconds — a delay no reader sees, during which a fast
model's tokens go out in one write — and the engine never wakes it; the first chunk, the end,
and a chunk after a lull (the timer found nothing and stopped) wake the loop at once.

`cancel()` (client gone, shutdown) stops the engine between two tokens; `on_done` runs on the
loop only once the backend has really stopped, so the next request in line finds it free.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable

from ..backends.base import ChunkStream
from ..chat import Chunk

END = object()
GONE = object()  # the client went away: what `next()` returns from then on
Event = Chunk | BaseException | object

#: How often the loop collects chunks of a running generation: ~33 writes a second, so text still
#: flows, and a fast model's tokens go out a few at a time. Every write wakes the server's loop and
#: the client, which on 2 cores slows llama.cpp's threads: 15 ms measured 0.91–0.94 of in-process
#: speed (`make bench-serve`), 30 ms 0.97–0.98.
PACE = 0.03


class Generation:
    def __init__(
        self, produce: Callable[[], ChunkStream], *, name: str = "generation", on_done: Callable[[], None] | None = None
    ):
        self._produce = produce
        self._on_done = on_done
        self._loop = asyncio.get_running_loop()
        self._pending: collections.deque[Event] = collections.deque()  # appended off the loop
        self._waiter: asyncio.Future | None = None
        self._polling = False  # the loop collects on its pace timer; _put need not wake it
        self._polled_empty = False
        self._cancel = threading.Event()
        self._stream: ChunkStream | None = None
        self._gone = False
        self.finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Generation:
        self._thread.start()
        return self

    def cancel(self) -> None:
        if self._cancel.is_set():
            return
        self._cancel.set()
        stream = self._stream
        if stream is not None:  # else the worker sees _cancel before it starts the stream
            stream.cancel()

    def interrupt(self) -> None:
        """The client went away (on the loop): `next()` returns GONE from now on, at once."""
        self._gone = True
        self._wake()
        self.cancel()

    async def next(self) -> Event:
        """The next chunk, the exception that ended the stream, END, or GONE."""
        while not self._gone:
            if self._pending:
                self._polling = True  # chunks are flowing: collect the next ones on the timer
                return self._pending.popleft()
            if self._polled_empty:  # a lull: from now on the next chunk wakes the loop itself
                self._polling = self._polled_empty = False
                continue  # look once more: a chunk may have come before _put saw the change
            self._waiter = self._loop.create_future()
            pace = self._loop.call_later(PACE, self._on_pace) if self._polling else None
            try:
                await self._waiter
            finally:
                if pace is not None:
                    pace.cancel()
                self._waiter = None
        return GONE

    def has_pending(self) -> bool:
        return bool(self._pending)

    def _on_pace(self) -> None:
        self._polled_empty = not self._pending
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _put(self, item: Event) -> None:
        """Off the loop: queue an event, and wake the loop unless its pace timer will collect it.
        (Append first, then read `_polling`: next() clears it, then looks again.)"""
        self._pending.append(item)
        if self._polling and isinstance(item, Chunk) and item.finish_reason is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _finished(self) -> None:
        self.finished = True
        if self._on_done is not None:
            self._on_done()

    def _pushed_end(self, error: BaseException | None) -> None:
        """The end of a pushed stream (on the engine thread, which is free once this returns)."""
        if error is not None:
            self._put(error)
        self._end()

    def _end(self) -> None:
        """Off the loop, once the backend has stopped: END for the reader, then free the slot."""
        self._put(END)
        try:
            self._loop.call_soon_threadsafe(self._finished)
        except RuntimeError:  # the loop is closed
            pass

    def _run(self) -> None:
        try:
            stream = self._stream = self._produce()
        except BaseException as exc:
            self._put(exc)
            self._end()
            return
        if self._cancel.is_set():  # cancelled while the stream was being built
            try:
                stream.close()
            except BaseException as exc:
                self._put(exc)
            self._end()
            return
        stream.push_to(self._put, self._pushed_end)
