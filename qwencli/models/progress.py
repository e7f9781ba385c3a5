"""Download progress on stderr: one Rich bar per file (bytes, speed, ETA) on a terminal; nothing but
a final line otherwise, so logs of scripted pulls stay short.

huggingface_hub's `http_get` reports through a tqdm-like class; `FileBar` is that class's stand-in,
feeding the Rich task instead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress


class FileBar:
    """What `http_get(tqdm_class=…)` needs: construct with total/initial, then update(n), close()."""

    def __init__(self, progress: PullProgress, description: str, total: int, done: int):
        self.progress = progress
        self.total = total
        self.done = done
        self.task = progress.add_task(description, total, done)

    def __call__(self, **kwargs: Any) -> FileBar:
        # http_get builds its bar after any Range decision: `initial` is where the bytes start.
        self.done = int(kwargs.get("initial") or 0)
        total = kwargs.get("total")
        if total:
            self.total = int(total)
        self.progress.set(self.task, self.done, self.total)
        return self

    def update(self, n: int | float = 1) -> None:
        self.done += int(n)
        self.progress.advance(self.task, int(n))

    def close(self) -> None:
        pass

    def __enter__(self) -> FileBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class PullProgress:
    """A pull's progress display. Use as a context manager around the downloads."""

    def __init__(self, *, enabled: bool | None = None):
        from ..stderr import stderr_console

        self.console = stderr_console()
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self._rich: Progress | None = None
        self.started = time.monotonic()
        self.transferred = 0

    def __enter__(self) -> PullProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._rich = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def bar(self, description: str, total: int, done: int = 0) -> FileBar:
        return FileBar(self, description, total, done)

    def add_task(self, description: str, total: int, done: int) -> Any:
        if self._rich is None:
            return None
        return self._rich.add_task(description, total=total, completed=done)

    def set(self, task: Any, done: int, total: int) -> None:
        if self._rich is not None and task is not None:
            self._rich.update(task, completed=done, total=total)

    def advance(self, task: Any, n: int) -> None:
        self.transferred += n
        if self._rich is not None and task is not None:
            self._rich.advance(task, n)

    def note(self, message: str) -> None:
        """A line above the bars on a terminal; dropped when quiet."""
        if self.enabled:
            self.console.print(message, style="dim", markup=False, highlight=False)

    def finish(self, message: str) -> None:
        """The one line every pull prints, terminal or not."""
        self.console.print(message, markup=False, highlight=False)
