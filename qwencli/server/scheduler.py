"""A FIFO of requests for one model: N slots, a bounded line, nobody cancelled.

llama-cpp-python's own server lets a new request cancel the stream in flight; here a request
waits its turn. `acquire()` is strict FIFO (the head of the line is served first, even if it
needs every slot, as a context reload does), and the line is bounded: past `max_waiting`
a request is refused at once with `QueueFull`, which the server turns into a 429.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__("queue full")
        self.retry_after = retry_after


@dataclass(eq=False)
class Ticket:
    slots: int
    future: asyncio.Future = field(repr=False)
    granted: bool = False
    released: bool = False


class Scheduler:
    def __init__(self, slots: int, max_waiting: int):
        if slots < 1 or max_waiting < 0:
            raise ValueError("slots must be >= 1 and max_waiting >= 0")
        self.slots = slots
        self.max_waiting = max_waiting
        self._free = slots
        self._line: collections.deque[Ticket] = collections.deque()
        self._avg_seconds = 5.0  # until a request has been timed
        self.last_active = time.monotonic()

    @property
    def waiting(self) -> int:
        return len(self._line)

    @property
    def running(self) -> int:
        return self.slots - self._free

    @property
    def idle(self) -> bool:
        return not self._line and self._free == self.slots

    def enqueue(self, *, exclusive: bool = False) -> Ticket:
        """Take a place in line now (or raise QueueFull); await `wait(ticket)` for the slot."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(self.slots if exclusive else 1, loop.create_future())
        if not self._line and self._free >= ticket.slots:
            self._grant(ticket)
            return ticket
        if len(self._line) >= self.max_waiting:
            raise QueueFull(self.retry_after())
        self._line.append(ticket)
        return ticket

    async def wait(self, ticket: Ticket) -> None:
        try:
            await asyncio.shield(ticket.future)
        except asyncio.CancelledError:
            self.release(ticket)  # gave up while waiting (client gone, shutdown)
            raise

    def release(self, ticket: Ticket, slots: int | None = None) -> None:
        """Give back `slots` of the ticket's slots (all by default); idempotent."""
        if ticket.released:
            return
        if not ticket.granted:
            ticket.released = True
            try:
                self._line.remove(ticket)
            except ValueError:
                pass
            if not ticket.future.done():
                ticket.future.cancel()
            self._serve()
            return
        n = ticket.slots if slots is None else min(slots, ticket.slots)
        ticket.slots -= n
        self._free += n
        if ticket.slots == 0:
            ticket.released = True
        self.last_active = time.monotonic()
        self._serve()

    def record(self, seconds: float) -> None:
        """How long a request held its slot, for the Retry-After estimate."""
        self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * seconds

    def retry_after(self) -> int:
        estimate = self._avg_seconds * (len(self._line) + 1) / self.slots
        return int(min(max(estimate, 1), 60))

    def _grant(self, ticket: Ticket) -> None:
        self._free -= ticket.slots
        ticket.granted = True
        self.last_active = time.monotonic()
        if not ticket.future.done():
            ticket.future.set_result(None)

    def _serve(self) -> None:
        while self._line and self._free >= self._line[0].slots:
            self._grant(self._line.popleft())
