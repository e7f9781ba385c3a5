"""Ollama's /api/pull and /api/delete through our own pull and store, when the operator allows it
(`qwen serve --allow-pull` / `--allow-delete`; a request must not download gigabytes unasked).

The pull is `models.pull.pull` (resume, sha256, disk and memory checks) on a worker thread; its
progress becomes Ollama's NDJSON status lines: "pulling manifest", one "pulling <file>" line per
advance with `total` and `completed`, "verifying sha256 digest", "success". Names are our names
(`qwen3:8b`, `qwen2.5-7b`, `owner/repo:quant`). A client that goes away does not stop the pull: it
finishes (or is resumed by the next one), so nothing half-installed is left either way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..errors import QwenError
from ..models.progress import PullProgress
from .openai_errors import ApiError, as_api_error
from .shapes import dumps

#: At most this many progress lines a second per file: a fast download must not flood the client.
LINES_PER_SECOND = 10


class NdjsonProgress(PullProgress):
    """A pull's progress as Ollama status objects, handed to the event loop as they happen."""

    def __init__(self, put: Any):
        super().__init__(enabled=False)
        self._put = put
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next = 0
        self._lock = threading.Lock()

    def __enter__(self) -> NdjsonProgress:
        return self

    def add_task(self, description: str, total: int, done: int) -> Any:
        with self._lock:
            task = self._next
            self._next += 1
            self._tasks[task] = {
                "status": f"pulling {description}",
                "digest": description,
                "total": total,
                "completed": done,
                "sent": 0.0,
            }
        self._send(task, force=True)
        return task

    def set(self, task: Any, done: int, total: int) -> None:
        if task in self._tasks:
            self._tasks[task].update(completed=done, total=total)
            self._send(task)

    def advance(self, task: Any, n: int) -> None:
        self.transferred += n
        if task in self._tasks:
            info = self._tasks[task]
            info["completed"] += n
            self._send(task, force=info["completed"] >= info["total"])

    def _send(self, task: int, force: bool = False) -> None:
        info = self._tasks[task]
        now = time.monotonic()
        if not force and now - info["sent"] < 1 / LINES_PER_SECOND:
            return
        info["sent"] = now
        self._put({k: v for k, v in info.items() if k != "sent"})

    def note(self, message: str) -> None:
        self._put({"status": message})

    def finish(self, message: str) -> None:
        self._put({"status": "verifying sha256 digest"})


def _pull(name: str, progress: NdjsonProgress) -> None:
    from ..models import names
    from ..models.pull import pull

    progress.note("pulling manifest")
    pull(names.parse(name), progress=progress)


def _error_line(exc: BaseException) -> dict[str, Any]:
    error = as_api_error(exc)
    return {"error": error.message, "status": error.status}  # "status" is taken off before sending


async def pull_response(name: str, *, stream: bool) -> Response:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def put(obj: dict[str, Any] | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, obj)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass

    def run() -> None:
        try:
            _pull(name, NdjsonProgress(put))
            put({"status": "success"})
        except BaseException as exc:  # every failure reaches the client as a status line
            put(_error_line(exc))
        finally:
            put(None)

    threading.Thread(target=run, name=f"pull {name}", daemon=True).start()
    if not stream:
        last: dict[str, Any] = {}
        while (item := await queue.get()) is not None:
            last = item
        if "error" in last:
            return JSONResponse({"error": last["error"]}, status_code=last["status"])
        return JSONResponse(last)

    async def lines() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            if "error" in item:
                item = {"error": item["error"]}
            yield dumps(item) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def delete_model(name: str) -> None:
    """Delete exactly the model `name` names from the store; a 404 when it is not there."""
    from ..models import names, store

    try:
        local = store.find(names.parse(name))
    except QwenError as exc:
        raise as_api_error(exc) from None
    if local is None:
        raise ApiError(404, f"model '{name}' not found")
    store.remove(local)
