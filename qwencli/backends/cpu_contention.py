"""Fewer llama.cpp threads while other programs want the CPU, all of them again once it is free.

llama.cpp waits at a spinning barrier after every operation of a token, once per thread. When
its threads plus another busy program outnumber the cores, the scheduler keeps preempting one of
its threads, the others spin until it comes back, and a token that takes 8 ms takes seconds.
Measured here (2 cores, SmolLM2, one busy process beside it, the answer on a terminal): raw
llama-cpp-python at 2 threads wrote 48 tokens in more than 60 s; at 1 thread in 0.8 s. With a
pipe instead of a terminal it was 16 ms per token at 2 threads against 12 at 1. On a quiet
machine, 2 threads are the fastest (130 against about 85 tokens/s).

So the thread count follows the machine:
- before the prompt is read (it stalls the same way: 27 prompt tokens took 6 s), as many threads
  as the cores that other programs' runnable threads leave free (/proc/stat procs_running, less
  our own), if two looks 1 ms apart agree on it;
- every `WINDOW` seconds of generation, at full strength, if the engine thread spent `CROWDED` or
  more of the window waiting for a core (its run-queue wait, /proc/thread-self/schedstat), one
  thread less;
- below it, if the cores we gave up sat idle (/proc/stat), one thread more.

The check costs one clock read per token; the small reads happen once per reply and per window. Where the
counters are missing (not Linux), nothing changes. The answer does not depend on the thread
count: each output row of llama.cpp's kernels is computed by one thread, whichever.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

WINDOW = 0.5  # seconds of generation between two looks
CROWDED = 0.25  # share of the window the engine thread waited for a core (quiet: 0.00–0.02; crowded: 0.38–0.50)
FREE = 0.8  # cores idle in the window, per thread we would add back
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit


class CpuCounters:
    """What the scheduler says about this thread and the machine (Linux)."""

    def thread_wait(self) -> int | None:
        """Nanoseconds the calling thread has spent runnable but not running."""
        try:
            with open("/proc/thread-self/schedstat", "rb") as f:
                return int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            return None

    cores = os.cpu_count() or 1

    def others_running(self) -> int | None:
        """Threads of other processes running or waiting for a core right now."""
        try:
            with open("/proc/stat", "rb") as f:
                running = next(int(line.split()[1]) for line in f if line.startswith(b"procs_running"))
            ours = 0
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                        stat = f.read()
                except OSError:  # the thread ended meanwhile
                    continue
                ours += stat[stat.rindex(b")") + 2 :][:1] == b"R"
        except (OSError, ValueError, StopIteration):
            return None
        return max(0, running - ours)

    def idle_seconds(self) -> float | None:
        """CPU seconds the whole machine has sat idle so far (all cores)."""
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
            return (int(fields[4]) + int(fields[5])) / _CLOCK_TICKS  # idle + iowait
        except (OSError, ValueError, IndexError):
            return None


class ThreadGovernor:
    """Chooses the engine's thread count between 1 and `full`; lives as long as the model."""

    def __init__(
        self,
        full: int,
        apply: Callable[[int], None],
        *,
        fixed: bool = False,
        counters: CpuCounters | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.full = max(1, full)
        self.threads = self.full
        self._apply = apply
        self._counters = counters or CpuCounters()
        self._clock = clock
        self._usable = not fixed and full > 1 and self._counters.thread_wait() is not None

    def watch(self, tokens: Iterable[T]) -> Iterator[T]:
        """`tokens`, unchanged, with a look at the machine every WINDOW seconds. Runs on the
        engine thread: the wait counter read is that thread's own."""
        if not self._usable:
            yield from tokens
            return
        self._fit_free_cores()
        since, waited, idle = self._clock(), self._counters.thread_wait(), self._counters.idle_seconds()
        for token in tokens:
            yield token
            now = self._clock()
            if now - since >= WINDOW:
                waited_now, idle_now = self._counters.thread_wait(), self._counters.idle_seconds()
                self._look(now - since, waited, waited_now, idle, idle_now)
                since, waited, idle = self._clock(), waited_now, idle_now

    def _fit_free_cores(self) -> None:
        """As many threads as other programs leave cores free, when two looks agree on the way
        to go (a busy or a quiet moment seen once proves nothing)."""
        targets = []
        for look in range(2):
            others = self._counters.others_running()
            if others is None:
                return
            targets.append(max(1, min(self.full, self._counters.cores - others)))
            if targets[-1] == self.threads:
                return
            if look == 0:
                time.sleep(0.001)
        if max(targets) < self.threads:
            self._set(max(targets))
        elif min(targets) > self.threads:
            self._set(min(targets))

    @property
    def lowered(self) -> int | None:
        """The thread count when below the start, else None."""
        return self.threads if self.threads < self.full else None

    def _look(
        self, seconds: float, waited: int | None, waited_now: int | None, idle: float | None, idle_now: float | None
    ) -> None:
        if waited is not None and waited_now is not None and self.threads > 1:
            if (waited_now - waited) / 1e9 / seconds >= CROWDED:
                self._set(self.threads - 1)
                return
        if self.threads < self.full and idle is not None and idle_now is not None:
            if (idle_now - idle) / seconds >= FREE:  # idle cores over the window
                self._set(self.threads + 1)

    def _set(self, threads: int) -> None:
        self.threads = threads
        self._apply(threads)
