"""One request's generation: produced on a worker thread, consumed on the event loop.

A backend stream blocks between tokens, so it must never run on the event loop (`/health`
and `/v1/models` answer while a model is busy). Each running request gets a thread that pulls
chunks and hands them to the loop; `cancel()` (client gone, shutdown) makes the thread stop
pulling and close the stream, which stops the engine between two tokens. `on_done` runs on the
loop only once the backend has really stopped, so the next request in line finds it free.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Iterator, Optional, Union

from ..chat import Chunk

END = object()
Event = Union[Chunk, BaseException, object]


class Generation:
    def __init__(self, produce: Callable[[], Iterator[Chunk]], *, name: str = "generation",
                 on_done: Optional[Callable[[], None]] = None):
        self._produce = produce
        self._on_done = on_done
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._cancel = threading.Event()
        self._stream: Any = None
        self.finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Generation":
        self._thread.start()
        return self

    def cancel(self) -> None:
        if self._cancel.is_set():
            return
        self._cancel.set()
        # A stream that can stop mid-prompt (not only between tokens) offers cancel().
        hook = getattr(self._stream, "cancel", None)
        if callable(hook):
            hook()

    async def next(self) -> Event:
        """The next chunk, the exception that ended the stream, or END."""
        return await self._events.get()

    def has_pending(self) -> bool:
        return not self._events.empty()

    def _put(self, item: Event) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _finished(self) -> None:
        self.finished = True
        if self._on_done is not None:
            self._on_done()

    def _run(self) -> None:
        stream = None
        try:
            stream = self._stream = self._produce()
            if not self._cancel.is_set():
                for chunk in stream:
                    self._put(chunk)
                    if self._cancel.is_set():
                        break
        except BaseException as exc:  # handed to the loop, which decides what the client sees
            self._put(exc)
        finally:
            try:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()  # waits until the engine has stopped
            except BaseException as exc:
                self._put(exc)
            self._put(END)
            try:
                self._loop.call_soon_threadsafe(self._finished)
            except RuntimeError:
                pass
