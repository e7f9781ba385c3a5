"""llama.cpp with batched decoding: several requests advance together, one token each per step.

What `qwen serve --parallel N` runs. One llama.cpp context holds N sequences (each with its own
KV cache of the per-slot context length, sharing the mmap'd weights); every step puts the next
token of every running sequence — plus a slice of any prompt still being read — into one
`llama_decode` call. Decoding is bound by reading the weights, so N tokens in one pass cost
little more than one: that is how llama-server beats a one-at-a-time server with several
clients, and it all stays on the process's one llama.cpp thread (`step_engine`), so no two OpenMP
teams fight over cores.

It shares with the one-at-a-time backend what is not the engine: loading (`llama_load`), the
template and tokens (`llama_vocab`), the grammar (`llama_grammar`) and the reply (`reply`).
Each slot keeps its KV cache after a request, and a new request goes to the slot sharing the
longest prefix with its prompt (a follow-up turn of a chat reuses its history).

Images (a model loaded with its projector): mtmd splits the prompt into text and image chunks
(llama_vision.py); a step that finds a slot's next chunk to be an image encodes it and decodes its
embeddings into the slot's own sequence (one image a step, between the shared batches, so the
other slots' tokens go on between images), and the slot's text then joins the shared batch. A
slot's cache list is a layout, so an image already in a slot is not encoded again.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import sampling
from ..chat import Chunk, FinishReason, GenerationOptions, Image, Message, TokenLogprob
from ..errors import BackendUnavailable, InvalidModelFile, UsageError
from ..formats.gguf import read_model
from ..hardware import available_memory, physical_cores
from ..thinking import Mode
from .base import Backend, LoadOptions
from .llama_lib import warm_numpy
from .llama_load import Handles, choose_context_length, gpu_layers, load_handles, model_info
from .llama_logprobs import RowReader, first_prompt_token
from .llama_memory import RecurrentCheckpoints, checkpoint_positions
from .llama_sampler import picker, sampler_chain
from .llama_tokens import EngineTokenizer
from .llama_vision import (
    Cell,
    Chunks,
    ImagePart,
    Part,
    TextPart,
    checkpoint_positions_with_images,
    prompt_images,
)
from .llama_vocab import LlamaVocab
from .local import common_prefix, images_overflow, reply_budget
from .pipeline import as_rendered, chat_prompt, checkpoint_prefixes, reply_mode
from .reply import Reply
from .step_engine import StepEngine, llama_engine
from .thinking_budget import FORCED_END, ThinkingBudget

#: Tokens per decode step: running sequences' next tokens first, then prompt slices. Small enough
#: that a long prompt does not stall the others (or a cancel) for long, large enough for speed.
STEP_TOKENS = 256
_END = object()


@dataclass(eq=False)
class _Request:
    prompt: str | Sequence[int]
    options: GenerationOptions
    mode: Mode
    marks: Sequence[str] = ()  # prefixes of the prompt where hybrid models checkpoint (llama_memory.py)
    images: Sequence[Image] = ()  # the prompt's images, in order (a chat prompt only)
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)
    #: Where the chunks go: into `out` for a stream that is iterated; for one that is pushed
    #: (`BatchedStream.push_to`), straight to the consumer: no thread woken per token and step.
    pushed: tuple[Callable[[Chunk], None], Callable[[BaseException | None], None]] | None = None
    emit: Callable[[Chunk], None] = field(init=False)  # the reply's sink: out.put, or the pushed on_item

    def __post_init__(self) -> None:
        self.emit = self.out.put

    def end(self, error: BaseException | None = None) -> None:
        """The request's end (after its last chunk, or with `error`); then it is `finished`."""
        if self.pushed is not None:
            self.pushed[1](error)
        else:
            if error is not None:
                self.out.put(error)
            self.out.put(_END)
        self.finished.set()


@dataclass(eq=False)
class _Slot:
    seq_id: int
    cached: list[Cell] = field(default_factory=list)  # this sequence's KV cache: tokens and images
    last_used: float = 0.0
    checkpoints: RecurrentCheckpoints | None = None  # hybrid models: see llama_memory.py
    checkpoint_at: list[int] = field(default_factory=list)  # prompt positions still to checkpoint at
    # The running request, if any:
    request: _Request | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens not yet decoded
    parts: list[Part] = field(default_factory=list)  # with images: the prompt's chunks after `pending`
    chunks: Chunks | None = None  # with images: what `parts` point into, freed when the request ends
    next_token: int | None = None  # sampled, to be decoded next step
    sampler: Any = None
    pick: Any = None  # llama_sampler.Picker: the chain's, or for a greedy reply the row read in place
    reply: Reply | None = None
    thinking: ThinkingBudget | None = None  # the reasoning's budget, when the request set one
    forced: list[int] = field(default_factory=list)  # tokens to put in the reply instead of sampling
    #: With `prompt_logprobs`: the prompt's tokens and their log-probabilities so far.
    prompt: list[int] = field(default_factory=list)
    scored: list[TokenLogprob] = field(default_factory=list)

    # A slot in `_running` always has both; these say so to the type checker and to the reader.
    @property
    def active_request(self) -> _Request:
        assert self.request is not None, "a free slot has no request"
        return self.request

    @property
    def active_reply(self) -> Reply:
        assert self.reply is not None, "a free slot has no reply"
        return self.reply


class BatchedStream:
    """The chunks of one request; `cancel()` from any thread stops it within a step. The request
    goes to the engine at the first `next()` or `push_to()`."""

    def __init__(self, request: _Request, submit: Callable[[_Request], None]):
        self._request = request
        self._submit: Callable[[_Request], None] | None = submit
        self._done = False

    def _start(self) -> None:
        if self._submit is not None:
            submit, self._submit = self._submit, None
            submit(self._request)

    def __iter__(self) -> BatchedStream:
        return self

    def __next__(self) -> Chunk:
        if self._done:
            raise StopIteration
        self._start()
        item = self._request.out.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def cancel(self) -> None:
        self._request.cancelled.set()

    def push_to(self, on_item: Callable[[Chunk], None], on_end: Callable[[BaseException | None], None]) -> None:
        """The engine thread calls `on_item` for each chunk and `on_end` once the slot is free: both
        must be quick and must not block, as they run inside a step every request shares (the
        server's `Generation` only appends to a deque). Waking a thread per request and token to
        pull instead cost the batched server 4 wake-ups a step on 2 cores."""
        if self._submit is None:
            raise RuntimeError("a batched stream can be consumed only once")
        self._request.pushed = (on_item, on_end)
        self._request.emit = on_item
        self._done = True
        self._start()

    def close(self) -> None:
        """Stop the request and wait until the engine has let go of it."""
        self._request.cancelled.set()
        if self._submit is None:  # submitted: wait for the engine
            self._request.finished.wait()
        self._submit = None
        self._done = True


class BatchedLlamaCppBackend(EngineTokenizer, Backend):
    _engine: StepEngine

    def __init__(
        self,
        path: Path,
        load: LoadOptions = LoadOptions(),
        *,
        name: str | None = None,
        slots: int = 4,
        projector: Path | None = None,
    ):
        if slots < 1:
            raise UsageError("slots must be at least 1")
        started = time.perf_counter()
        self.slots = slots
        self.model = read_model(Path(path))
        if load.context_length is None:
            # Each slot gets the context one model would get from a share of the memory.
            n_ctx, _ = choose_context_length(self.model, None, available_memory() // slots)
            load = dataclasses.replace(load, context_length=n_ctx)
        n_ctx, reason = choose_context_length(self.model, load.context_length, available_memory())
        self._load_options = load
        self._threads = load.threads or physical_cores()
        self._free: list[_Slot] = [_Slot(i) for i in range(slots)]
        self._running: list[_Slot] = []
        self._waiting: collections.deque[_Request] = collections.deque()
        self._handles: Handles | None = None
        self._projector_path = projector
        self._projector: Any = None  # llama_vision.Projector, loaded with the model when given
        self._engine = llama_engine()
        self._stepper = self._engine.stepper(self._step, self._on_step_error)
        self._engine.call_between(self._load_on_engine, n_ctx)
        self.template = self._vocab.template
        self.info = model_info(
            self.model,
            self.template,
            name=name,
            n_ctx=n_ctx,
            reason=reason,
            started=started,
            threads=self._threads,
            gpu_layers=self._gpu_layers,
        )
        if projector is not None:
            self.info = dataclasses.replace(self.info, projector=projector)
        self.family = self.info.family

    def _load_on_engine(self, n_ctx: int) -> None:
        import llama_cpp

        load = self._load_options
        if self._handles is not None:
            self._fail_all(BackendUnavailable("the model was reloaded"))
            self._close_handles()
        self._gpu_layers = gpu_layers(load)
        warm_numpy()  # for the greedy picker, imported while the weights load
        self._handles = load_handles(
            self.model,
            load,
            n_ctx=n_ctx * self.slots,
            n_batch=STEP_TOKENS + self.slots,
            threads=self._threads,
            gpu_layers=self._gpu_layers,
            n_seq=self.slots,
        )
        self._vocab = LlamaVocab(self._handles.model.model, self.model)
        self._memory = llama_cpp.llama_get_memory(self._handles.ctx.ctx)
        self._n_ctx = n_ctx
        for slot in self._free:
            slot.cached = []
            slot.checkpoints = RecurrentCheckpoints(self._handles.model.model, self._handles.ctx.ctx, slot.seq_id)
        self._hybrid = any(slot.checkpoints is not None and slot.checkpoints.enabled for slot in self._free)
        if self._projector_path is not None:
            from .llama_vision import load_projector

            model = self._handles.model.model
            self._projector = load_projector(
                self._projector_path, model, load, threads=self._threads, gpu_layers=self._gpu_layers
            )

    def _close_handles(self) -> None:
        if self._projector is not None:
            self._projector.close()
            self._projector = None
        if self._handles is not None:
            self._handles.close()
            self._handles = None

    # -- requests --------------------------------------------------------------------------

    def render(
        self, messages: Sequence[Message], options: GenerationOptions, tools: Sequence[dict] | None = None
    ) -> str:
        return chat_prompt(self.template, messages, options, tools)

    def count_prompt_tokens(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict] | None = None
    ) -> int:
        images = prompt_images(messages, self._projector_path, self.info.name)
        prompt = self.render(messages, options, tools)
        if images:
            return self._engine.call_between(lambda: self._projector.count_tokens(prompt, images))
        return len(self._engine.call_between(lambda: self._vocab.tokenize(prompt)))

    def chat(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict] | None = None
    ) -> BatchedStream:
        images = prompt_images(messages, self._projector_path, self.info.name)
        prompt = self.render(messages, options, tools)
        mode = reply_mode(self.template, prompt, options)
        marks = checkpoint_prefixes(self.template, messages, options, tools, prompt) if self._hybrid else ()
        return self._stream(prompt, as_rendered(options, mode), mode, marks, images)

    def complete(self, prompt: str | Sequence[int], options: GenerationOptions) -> BatchedStream:
        return self._stream(prompt, options, "text")

    def _stream(
        self,
        prompt: str | Sequence[int],
        options: GenerationOptions,
        mode: Mode,
        marks: Sequence[str] = (),
        images: Sequence[Image] = (),
    ) -> BatchedStream:
        request = _Request(prompt, sampling.resolve(options, self.family), mode, marks, images)
        return BatchedStream(request, self._submit)

    def _submit(self, request: _Request) -> None:
        self._waiting.append(request)  # deque.append is atomic; the engine thread pops
        self._stepper.wake()

    def _fail_all(self, error: BaseException) -> None:
        for slot in list(self._running):
            self._finish(slot, error=error)
        while self._waiting:
            self._waiting.popleft().end(error)

    def _on_step_error(self, exc: BaseException) -> None:
        """A step raised (a bug, or llama.cpp failing): end the requests in that step with the
        error, drop the KV caches (their content is unknown now) and carry on with the requests
        still waiting — they were not part of the failed step (and may arrive while we are here)."""
        import llama_cpp

        error = exc if isinstance(exc, Exception) else RuntimeError("generation stopped")
        for slot in list(self._running):
            self._finish(slot, error=error)
        for slot in self._free:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, 0, -1)
            slot.cached = []
            if slot.checkpoints is not None:
                slot.checkpoints.clear()

    def close(self) -> None:
        def free() -> None:
            self._fail_all(BackendUnavailable("the model was unloaded"))
            self._close_handles()

        self._engine.call(free)  # the engine thread is the process's: it stays

    # -- the step --------------------------------------------------------------------------

    def _step(self) -> bool:
        """Admit, decode one batch, sample; True while there is work left."""
        for slot in [s for s in self._running if s.active_request.cancelled.is_set()]:
            self._finish(slot, reason="cancelled")
        while self._waiting and self._free:
            request = self._waiting.popleft()
            if request.cancelled.is_set():
                request.end()
                continue
            try:
                self._admit(request)
            except BaseException as exc:
                request.end(exc)
        if not self._running:
            return bool(self._waiting)
        self._decode_and_sample()
        return bool(self._running or self._waiting)

    def _admit(self, request: _Request) -> None:
        chunks = self._chunks(request) if request.images else None
        try:
            self._admit_prompt(request, chunks)
        except BaseException:
            if chunks is not None:
                chunks.close()
            raise

    def _chunks(self, request: _Request) -> Chunks:
        """A prompt with images as mtmd's text and image chunks (llama_vision.py)."""
        if request.options.prompt_logprobs:
            raise UsageError("prompt log-probabilities are not available for a prompt with images")
        assert isinstance(request.prompt, str)  # chat prompts are text; token-id prompts carry no images
        projector = self._projector
        chunks = projector.tokenize(projector.to_marked(request.prompt, len(request.images)), request.images)
        if chunks.n_tokens >= self._n_ctx:
            overflow = images_overflow(chunks.n_tokens, chunks.image_tokens, self._n_ctx)
            chunks.close()
            raise overflow
        return chunks

    def _admit_prompt(self, request: _Request, chunks: Chunks | None) -> None:
        import llama_cpp

        if chunks is None:
            tokens = self._vocab.prompt_tokens(request.prompt)
            layout: list[Cell] = list(tokens)
        else:
            tokens, layout = [], chunks.layout()
        n_prompt = chunks.n_tokens if chunks is not None else len(tokens)
        budget = reply_budget(n_prompt, self._n_ctx, request.options)
        # The slot whose cache shares the longest prefix with this prompt, else the least recently used.
        slot = max(self._free, key=lambda s: (common_prefix(s.cached, layout), -s.last_used))
        common = common_prefix(slot.cached, layout)
        # Decode at least one position, and never start inside an image.
        keep = chunks.resume_at(common) if chunks is not None else min(common, len(tokens) - 1)
        scoring = request.options.prompt_logprobs
        if scoring:
            keep = common = 0  # the cache holds no logits for the tokens it shares: read it all again
        if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1):
            # Recurrent layers cannot drop a tail: back to a checkpoint, else read it all again.
            keep = slot.checkpoints.restore(self._memory, layout, min(common, keep)) if slot.checkpoints else 0
            if not keep:
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, 0, -1)
        marks: list[int] = []
        if self._hybrid and chunks is not None:
            assert isinstance(request.prompt, str)
            marks = checkpoint_positions_with_images(chunks, request.prompt, request.marks, self._vocab.special_piece)
        elif self._hybrid:
            marks = checkpoint_positions(self._vocab, tokens, request.marks)
        slot.checkpoint_at = [m for m in marks if keep < m]
        sampler = sampler_chain(request.options, self._vocab)
        self._free.remove(slot)
        slot.request = request
        slot.cached = layout[:keep]
        slot.chunks = chunks
        slot.parts = chunks.after(keep) if chunks is not None else [TextPart(tokens[keep:])]
        slot.pending = []
        self._next_text(slot)
        slot.next_token = None
        slot.sampler = sampler
        assert self._handles is not None  # admission runs only while the model is loaded
        slot.pick = picker(self._handles.ctx.ctx, sampler.sampler, self._vocab.size, request.options)
        slot.prompt = tokens if scoring else []
        slot.scored = [first_prompt_token(tokens[0], self._vocab.special_piece)] if scoring else []
        vocab = self._vocab
        slot.reply = Reply(
            request.emit,
            mode=request.mode,
            stops=request.options.stop,
            piece=vocab.piece,
            is_end=vocab.is_end,
            cancel=request.cancelled,
            budget=budget,
            n_prompt=n_prompt,
            cached=chunks.tokens_before(keep) if chunks is not None else keep,
            image_tokens=chunks.image_tokens if chunks is not None else (),
        )
        budget_tokens = request.options.thinking_budget
        slot.thinking = None
        if budget_tokens is not None and request.mode != "text":
            slot.thinking = ThinkingBudget(budget_tokens, request.mode, vocab.text_tokens(FORCED_END), vocab.piece)
        slot.forced = []
        self._running.append(slot)
        if slot.reply.finished and not scoring:  # max_tokens 0
            self._finish(slot)

    @staticmethod
    def _next_text(slot: _Slot) -> None:
        """Move the slot's next text chunk into `pending` when nothing is pending (an image next stays)."""
        if not slot.pending and slot.parts and isinstance(slot.parts[0], TextPart):
            part = slot.parts.pop(0)
            assert isinstance(part, TextPart)
            slot.pending = part.tokens

    def _evaluate_image(self) -> None:
        """Encode one image some slot reads next into that slot's sequence (before the shared
        batch: mtmd decodes it on its own). One a step, so the other slots go on between images."""
        import llama_cpp

        slot = next((s for s in self._running if not s.pending and s.parts and isinstance(s.parts[0], ImagePart)), None)
        if slot is None:
            return
        part = slot.parts.pop(0)
        assert isinstance(part, ImagePart) and self._handles is not None
        last = not slot.parts
        try:
            self._projector.evaluate(
                self._handles.ctx.ctx,
                part,
                len(slot.cached),
                STEP_TOKENS + self.slots,
                logits_last=last,
                seq_id=slot.seq_id,
            )
        except InvalidModelFile as error:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, 0, -1)  # what it holds now is unknown
            slot.cached = []
            self._finish(slot, error=error)
            return
        slot.cached.extend([part.key] * part.n_pos)
        if slot.checkpoint_at and slot.checkpoints and len(slot.cached) == slot.checkpoint_at[0]:
            slot.checkpoints.save(slot.cached)
        slot.checkpoint_at = [m for m in slot.checkpoint_at if m > len(slot.cached)]
        if last:  # a prompt that ends with its image: the reply starts from the image's last row
            self._emit(slot, slot.pick(-1))
        self._next_text(slot)

    def _decode_and_sample(self) -> None:
        import llama_cpp

        handles = self._handles
        assert handles is not None  # steps run only while the model is loaded
        self._evaluate_image()
        batch, ctx = handles.batch.batch, handles.ctx.ctx
        n = 0
        sample_at: list[tuple[_Slot, int]] = []
        placed: list[tuple[_Slot, list[int]]] = []
        scored_at: list[tuple[_Slot, int, int]] = []  # (slot, first batch index, tokens) of prompts scored

        def put(slot: _Slot, token: int, pos: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq_id
            batch.logits[n] = logits
            n += 1

        for slot in self._running:  # generating sequences: one token each
            if slot.next_token is not None:
                put(slot, slot.next_token, len(slot.cached), True)
                sample_at.append((slot, n - 1))
                placed.append((slot, [slot.next_token]))
        room = STEP_TOKENS
        for slot in self._running:  # then prompts, oldest first, in slices
            if slot.next_token is not None or not slot.pending or room <= 0:
                continue
            # A slice ends at the next checkpoint, so the state can be saved right there.
            take = min(room, slot.checkpoint_at[0] - len(slot.cached)) if slot.checkpoint_at else room
            piece, slot.pending = slot.pending[:take], slot.pending[take:]
            room -= len(piece)
            start = len(slot.cached)
            scoring = bool(slot.prompt)
            if scoring:
                scored_at.append((slot, n, len(piece)))
            last = not slot.pending and not slot.parts  # the prompt's end, not an image's start
            for i, token in enumerate(piece):
                put(slot, token, start + i, scoring or (last and i == len(piece) - 1))
            if last:
                sample_at.append((slot, n - 1))
            placed.append((slot, piece))
        if n == 0:
            return
        batch.n_tokens = n
        status = llama_cpp.llama_decode(ctx, batch)
        if status != 0:
            error = InvalidModelFile(f"llama.cpp failed while generating (llama_decode returned {status})")
            for slot, _ in placed:
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, 0, -1)
                slot.cached = []
                self._finish(slot, error=error)
            return
        for slot, tokens in placed:
            slot.cached.extend(tokens)
            if slot.checkpoint_at and len(slot.cached) == slot.checkpoint_at[0] and slot.checkpoints:
                slot.checkpoints.save(slot.cached)
                slot.checkpoint_at.pop(0)
        vocab = self._vocab
        rows = RowReader(ctx, vocab.size, vocab.piece) if self._any_logprobs() else None
        prompt_rows = RowReader(ctx, vocab.size, vocab.special_piece) if scored_at else None
        for slot, first, count in scored_at:
            assert prompt_rows is not None
            at, prompt, top_n = len(slot.scored), slot.prompt, slot.active_request.options.logprobs or 0
            # Row j predicts the prompt token after it; the prompt's last row is the first reply token's.
            slot.scored += [
                prompt_rows.read(first + j, prompt[at + j], top_n) for j in range(count) if at + j < len(prompt)
            ]
            if not slot.pending:
                slot.active_reply.prompt_logprobs = tuple(slot.scored)
        for slot, index in sample_at:
            reply = slot.active_reply
            if reply.finished:  # `max_tokens: 0` with the prompt scored: nothing to sample
                self._finish(slot)
                continue
            if slot.forced:  # the end of thinking, its budget spent (thinking_budget.py)
                token = slot.forced.pop(0)
                slot.pick.accept(token)
            else:
                token = slot.pick(index)
            alternatives = slot.active_request.options.logprobs
            if alternatives is not None and rows is not None:
                reply.logprobs.append(rows.read(index, token, alternatives))
            self._emit(slot, token)

    def _any_logprobs(self) -> bool:
        return any(slot.active_request.options.logprobs is not None for slot in self._running)

    def _emit(self, slot: _Slot, token: int) -> None:
        if slot.active_reply.add(token):
            self._finish(slot)
            return
        slot.next_token = token
        if slot.thinking is not None and not slot.forced:
            slot.forced = slot.thinking.after(token)

    def _finish(self, slot: _Slot, *, reason: FinishReason | None = None, error: BaseException | None = None) -> None:
        """End the slot's request — with its last chunk, or with `error` — and free the slot."""
        request = slot.active_request
        if error is None:
            slot.active_reply.finish(reason)
        if slot.sampler is not None:
            slot.sampler.close()
        slot.request = slot.sampler = slot.reply = slot.next_token = slot.pick = slot.thinking = None
        if slot.chunks is not None:
            slot.chunks.close()
            slot.chunks = None
        slot.pending, slot.parts = [], []
        slot.forced = []
        slot.checkpoint_at = []
        slot.prompt, slot.scored = [], []
        slot.last_used = time.monotonic()
        self._running.remove(slot)
        self._free.append(slot)
        # Last: whoever waits on `finished` (a closing stream) may rely on the slot being free.
        request.end(error)
