"""The response of a generation request: wait in line, generate, stream or collect.

An ASGI app of its own (returned by the endpoints), because it must watch the connection the
whole time: a client that goes away while waiting leaves the line, and one that goes away
mid-stream stops its generation. The status line is sent only after the first event, so a
prompt too long for the context (or any error before the first token) is a proper HTTP error,
not a broken stream; an error after that goes in-band as `data: {"error": …}` then `[DONE]`.
How the reply is written (OpenAI chunks, Ollama NDJSON, Anthropic events) is its `Renderer`'s
business (`shapes.py`); everything above is the same for every API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any, TypeVar, cast

from starlette.responses import Response

from ..backends.base import ChunkStream, Evaluating, ModelInfo, PulledStream
from ..chat import Chunk, GenerationOptions
from ..thinking import asked_to_think, unchangeable
from .completion_choices import ChoicesRenderer, wants_choices
from .generation import END, GONE, Generation
from .jobs import Job
from .openai_errors import as_api_error
from .registry import Checkout, Registry
from .security import Message, Receive, Scope, Send, send_error
from .shapes import OpenAIRenderer, Renderer

log = logging.getLogger("qwencli.server")
T = TypeVar("T")


class ClientGone(Exception):
    pass


def produce(checkout: Checkout, job: Job) -> ChunkStream:
    backend = checkout.model.backend
    if job.kind == "chat":
        _note_thinking(backend.info, job)
        return backend.chat(job.messages, job.options, tools=job.tools)
    prompts = job.prompts or (job.prompt,)
    if len(prompts) == 1 and isinstance(prompts[0], str):
        return backend.complete(prompts[0], job.options)
    # Token ids or several prompts: llama.cpp only (`jobs.needs_llama_cpp` checked the model).
    evaluating = cast(Evaluating, backend)
    if len(prompts) == 1:
        return evaluating.complete(prompts[0], job.options)
    return PulledStream(_one_after_another(evaluating, prompts, job.options))


def _one_after_another(
    backend: Evaluating, prompts: Sequence[str | Sequence[int]], options: GenerationOptions
) -> Iterator[Chunk]:
    """Each prompt's chunks in turn, each ending with its last chunk (one choice each)."""
    for prompt in prompts:
        stream = backend.complete(prompt, options)
        try:
            yield from stream
        finally:
            stream.close()


def _note_thinking(info: ModelInfo, job: Job) -> None:
    """A request asked for thinking on or off that this model's template cannot change: the reply
    comes as the template makes it, and the server's log says why."""
    options = job.options
    asked = asked_to_think(options.think, options.reasoning_effort, options.think_without_levels)
    why = unchangeable(info.thinking, asked)
    if why:
        log.info("%s: the request's thinking switch has no effect: %s", info.name, why)


class GenerationResponse(Response):
    def __init__(self, registry: Registry, checkout: Checkout, job: Job, renderer: Renderer | None = None):
        super().__init__()
        self.registry = registry
        self.checkout = checkout
        self.job = job
        if renderer is None:
            renderer = ChoicesRenderer(job) if wants_choices(job) else OpenAIRenderer(job)
        self.renderer: Renderer = renderer
        self._gone = asyncio.Event()
        self._generation: Generation | None = None

    async def _until_gone(self, awaitable: Awaitable[T]) -> T:
        """`awaitable`'s result, or ClientGone as soon as the client disconnects."""
        task = asyncio.ensure_future(awaitable)
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if task.done():
            return task.result()
        task.cancel()
        raise ClientGone()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._gone.set()
                if self._generation is not None:
                    self._generation.interrupt()
                return

    async def _next(self, generation: Generation) -> Any:
        """The generation's next event; ClientGone once the client has gone (no task a token:
        the watcher interrupts the generation instead)."""
        event = await generation.next()
        if event is GONE:
            raise ClientGone()
        return event

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_started = False

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        watcher = asyncio.create_task(self._watch(receive))
        scheduler = self.checkout.model.scheduler
        ticket = self.checkout.ticket
        generation: Generation | None = None
        started = time.monotonic()
        try:
            await self._until_gone(scheduler.wait(ticket))
            if self.checkout.reload_to is not None:
                await self.registry.reload(self.checkout)
                scheduler.release(ticket, ticket.slots - 1)  # keep one slot for this request

            def release() -> None:
                scheduler.record(time.monotonic() - started)
                scheduler.release(ticket)

            generation = self._generation = Generation(
                lambda: produce(self.checkout, self.job), name=f"gen {self.job.model}", on_done=release
            ).start()
            if self._gone.is_set():
                raise ClientGone()
            renderer = self.renderer
            first = await self._next(generation)
            if isinstance(first, BaseException):
                error = as_api_error(first)
                await send_error(tracked_send, error, renderer.error(error))
                return
            if self.job.stream:
                await self._stream(tracked_send, generation, renderer, first)
            else:
                await self._collect(tracked_send, generation, renderer, first)
        except ClientGone:
            log.info("client went away; stopped its %s request", self.job.model)
        except Exception as exc:  # a QwenError from a reload, or a bug: never a bare 500 page
            if not response_started:
                error = as_api_error(exc)
                await send_error(tracked_send, error, self.renderer.error(error))
            else:
                log.exception("generation response failed after it started")
        finally:
            watcher.cancel()
            if generation is not None:
                generation.cancel()  # a no-op when it finished; the slot frees when it stops
            else:
                scheduler.release(ticket)

    async def _stream(self, send: Send, generation: Generation, renderer: Renderer, first: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": renderer.stream_headers})
        out = [renderer.head()]
        event = first
        while True:
            if event is END:
                out.append(renderer.tail())
                break
            if isinstance(event, BaseException):
                out.append(renderer.stream_error(as_api_error(event)))
                break
            out.append(renderer.chunk(event))
            if event.finish_reason is None and not generation.has_pending():
                body = b"".join(out)
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                out = []
            event = await self._next(generation)
        await send({"type": "http.response.body", "body": b"".join(out), "more_body": False})

    async def _collect(self, send: Send, generation: Generation, renderer: Renderer, first: Any) -> None:
        event = first
        while event is not END:
            if isinstance(event, BaseException):
                error = as_api_error(event)
                await send_error(send, error, renderer.error(error))
                return
            renderer.feed(event)
            event = await self._next(generation)
        body = renderer.collected()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
