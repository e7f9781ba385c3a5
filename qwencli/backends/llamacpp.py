"""The llama.cpp backend, one request at a time, over llama.cpp's C API.

Why not llama-cpp-python's `Llama`: `create_chat_completion(stream=True)` re-detokenizes the whole
reply on every token (180–510 µs a token here) and renders templates its own way, and even its
low-level `generate()` copies the whole logits row into numpy (49K–248K floats) and trims the KV
cache on every token: 0.85 of llama-bench's decode speed. Here, as in the batched backend, a
token is one `llama_decode` of one token and one pick (`llama_sampler`): llama.cpp's own sampler
chain, grammar included, or for a greedy reply an argmax over the row in place; the cache is
trimmed once a request, to the prefix it shares with the previous one. The tokens go to the one
reply loop (`reply.Reply`). (llama.cpp's experimental backend sampling, `llama_set_sampler`,
puts the argmax into the graph and skips copying the row out; on CPU it measured 1.8× slower a
token on the 152K-vocabulary tiny model, 2.2 ms against 1.2 ms, so it is not used.)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from .. import sampling
from ..chat import Chunk, GenerationOptions, Image, Message, TokenLogprob
from ..errors import InvalidModelFile
from ..formats.gguf import read_model
from ..hardware import available_memory, physical_cores
from ..templates import compile_soon
from ..thinking import Mode
from .base import Backend, ChunkStream, LoadOptions
from .cpu_contention import ThreadGovernor
from .llama_lib import warm_numpy
from .llama_load import Handles, choose_context_length, gpu_layers, load_handles, model_info, raised_context
from .llama_logprobs import RowReader, first_prompt_token
from .llama_memory import RecurrentCheckpoints, checkpoint_positions
from .llama_sampler import Picker, picker, sampler_chain
from .llama_tokens import EngineTokenizer
from .llama_vision import Cell, prompt_images
from .llama_vocab import LlamaVocab
from .local import common_prefix, images_overflow, reply_budget
from .pipeline import as_rendered, chat_prompt, checkpoint_prefixes, reply_mode
from .reply import Reply
from .step_engine import llama_engine
from .thinking_budget import FORCED_END, ThinkingBudget


class LlamaCppBackend(EngineTokenizer, Backend):
    def __init__(
        self, path: Path, load: LoadOptions = LoadOptions(), *, name: str | None = None, projector: Path | None = None
    ):
        started = time.perf_counter()
        self.model = read_model(Path(path))
        self._projector_path = projector
        self._projector: Any = None  # llama_vision.Projector, loaded with the model when given
        self._load_options = load
        self._threads = load.threads or physical_cores()
        self._engine = llama_engine()
        self._handles: Handles | None = None
        # What the KV cache holds, position by position: text tokens and images (llama_vision.Cell).
        self._cached: list[Cell] = []
        # The log-probabilities of the first tokens of `_cached`, as the last scored prompt left
        # them (with `_scored_top` alternatives): a prompt sharing a prefix reads only the rest.
        self._scored: list[TokenLogprob] = []
        self._scored_top = 0
        n_ctx, reason = choose_context_length(self.model, load.context_length, available_memory())
        self._context_fixed = load.context_length is not None
        compile_soon(self.model.chat_template)  # while the weights load
        self._engine.call_between(self._load_on_engine, n_ctx)  # a new load: nothing of it streams yet
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

    # -- loading ---------------------------------------------------------------------------

    def _load_on_engine(self, n_ctx: int) -> None:
        import llama_cpp

        load = self._load_options
        if self._projector is not None:
            self._projector.close()
            self._projector = None
        if self._handles is not None:
            self._handles.close()
            self._handles = None
        self._gpu_layers = gpu_layers(load)
        n_batch = min(512, n_ctx)
        warm_numpy()  # for the greedy picker (llama_sampler.GreedyPicker), imported while the weights load
        self._handles = load_handles(
            self.model, load, n_ctx=n_ctx, n_batch=n_batch, threads=self._threads, gpu_layers=self._gpu_layers
        )
        self._n_ctx, self._n_batch = n_ctx, n_batch
        self._handles.batch.one_sequence()
        self._cached = []
        self._scored = []
        self._vocab = LlamaVocab(self._handles.model.model, self.model)
        if self._projector_path is not None:
            from .llama_vision import load_projector

            model = self._handles.model.model
            self._projector = load_projector(
                self._projector_path, model, load, threads=self._threads, gpu_layers=self._gpu_layers
            )
        ctx = self._handles.ctx.ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._checkpoints = RecurrentCheckpoints(self._handles.model.model, ctx)
        # A thread count the user gave is kept as given.
        self._governor = ThreadGovernor(
            self._threads, lambda n: llama_cpp.llama_set_n_threads(ctx, n, n), fixed=load.threads is not None
        )

    def ensure_context(self, needed: int) -> bool:
        """Grow the context to hold `needed` tokens if the user did not fix it; True if it does."""
        if needed <= self.info.context_length:
            return True
        target = None if self._context_fixed else raised_context(self.model, needed)
        if target is None:
            return False
        started = time.perf_counter()
        self._engine.call(self._load_on_engine, target)
        self.info = dataclasses.replace(
            self.info,
            context_length=target,
            context_reason=f"{target} (raised for a long prompt; trained {self.model.context_length})",
            load_seconds=self.info.load_seconds + time.perf_counter() - started,
        )
        return True

    # -- prompts ---------------------------------------------------------------------------

    def render(
        self, messages: Sequence[Message], options: GenerationOptions, tools: Sequence[dict] | None = None
    ) -> str:
        return chat_prompt(self.template, messages, options, tools)

    def _tokenize(self, text: str) -> list[int]:
        return self._vocab.tokenize(text)

    def count_prompt_tokens(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict] | None = None
    ) -> int:
        # Before rendering: a text model's template may choke on image parts.
        images = prompt_images(messages, self._projector_path, self.info.name)
        prompt = self.render(messages, options, tools)
        if images:
            return self._engine.call_between(self._projector.count_tokens, prompt, images)
        return len(self._engine.call_between(self._tokenize, prompt))

    # -- generation ------------------------------------------------------------------------

    def chat(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict] | None = None
    ) -> ChunkStream:
        images = prompt_images(messages, self._projector_path, self.info.name)
        prompt = self.render(messages, options, tools)
        mode = reply_mode(self.template, prompt, options)
        # Hybrid models checkpoint their memory where a later prompt may part (llama_memory.py).
        marks = (
            checkpoint_prefixes(self.template, messages, options, tools, prompt) if self._checkpoints.enabled else ()
        )
        if images:
            resolved = sampling.resolve(as_rendered(options, mode), self.family)
            return self._engine.emitting(
                lambda cancel, emit: self._generate(prompt, resolved, mode, cancel, emit, marks, images=images)
            )
        return self._stream(prompt, as_rendered(options, mode), mode, marks)

    def complete(self, prompt: str | Sequence[int], options: GenerationOptions) -> ChunkStream:
        return self._stream(prompt, options, "text")

    def _stream(
        self, prompt: str | Sequence[int], options: GenerationOptions, mode: Mode, marks: Sequence[str] = ()
    ) -> ChunkStream:
        options = sampling.resolve(options, self.family)
        return self._engine.emitting(lambda cancel, emit: self._generate(prompt, options, mode, cancel, emit, marks))

    def _generate(
        self,
        prompt: str | Sequence[int],
        options: GenerationOptions,
        mode: Mode,
        cancel: threading.Event,
        emit: Callable[[Chunk], None],
        marks: Sequence[str] = (),
        images: Sequence[Image] = (),
    ) -> None:
        import llama_cpp

        vocab = self._vocab
        started = time.perf_counter()
        if images:
            assert isinstance(prompt, str)  # chat prompts are text; token-id prompts carry no images
            self._generate_with_images(prompt, images, options, mode, cancel, emit, started, marks)
            return
        tokens = vocab.prompt_tokens(prompt)
        budget = reply_budget(len(tokens), self._n_ctx, options)
        sampler = sampler_chain(options, vocab)
        try:
            if options.prompt_logprobs:
                keep = self._keep_for_scoring(tokens, options.logprobs or 0)
            else:
                common = common_prefix(self._cached, tokens)
                # At least the last prompt token is decoded again: its logits give the first reply token.
                keep = min(common, len(tokens) - 1)
                if not llama_cpp.llama_memory_seq_rm(self._memory, 0, keep, -1):
                    # Recurrent layers cannot drop a tail: back to a checkpoint, else read it all again.
                    keep = self._checkpoints.restore(self._memory, tokens, common)
                    if not keep:
                        llama_cpp.llama_memory_seq_rm(self._memory, 0, 0, -1)
                del self._cached[keep:]
                del self._scored[keep:]
            checkpoint_at = [m for m in checkpoint_positions(vocab, tokens, marks) if keep < m] if marks else []
            reply = self._reply(emit, mode, options, cancel, budget, n_prompt=len(tokens), cached=keep, started=started)
            pending = tokens[keep:]
            if options.prompt_logprobs:
                reply.prompt_logprobs = self._score_prompt(tokens, keep, options.logprobs or 0)
                pending = []
            if budget <= 0:
                reply.finish()  # prompt-only scoring (`max_tokens: 0`): nothing to sample
                return
            record = None
            if options.logprobs is not None:
                rows, top_n, out = self._rows(), options.logprobs, reply.logprobs
                record = lambda token: out.append(rows.read(-1, token, top_n))  # noqa: E731
            thinking = None
            if options.thinking_budget is not None and mode != "text":
                thinking = ThinkingBudget(options.thinking_budget, mode, vocab.text_tokens(FORCED_END), vocab.piece)
            generated = self._tokens(
                pending, self._picker(options, sampler), checkpoint_at, thinking=thinking, record=record
            )
            try:
                reply.run(self._governor.watch(generated))
            finally:
                generated.close()
        finally:
            sampler.close()

    def _generate_with_images(
        self,
        prompt: str,
        images: Sequence[Image],
        options: GenerationOptions,
        mode: Mode,
        cancel: threading.Event,
        emit: Callable[[Chunk], None],
        started: float,
        marks: Sequence[str] = (),
    ) -> None:
        """`_generate` for a prompt with images: mtmd splits it into text and image chunks
        (llama_vision.py). The cache keeps the longest prefix of the prompt's layout it already
        holds, text and whole images, and only the rest is evaluated: an image in the same place
        as last turn is not encoded again. A hybrid model goes back to a checkpoint instead,
        which may lie after an image as well as before it."""
        import llama_cpp

        from .llama_vision import TextPart, checkpoint_positions_with_images

        projector = self._projector
        chunks = projector.tokenize(projector.to_marked(prompt, len(images)), images)
        try:
            n_prompt = chunks.n_tokens
            if n_prompt >= self._n_ctx:
                raise images_overflow(n_prompt, chunks.image_tokens, self._n_ctx)
            budget = reply_budget(n_prompt, self._n_ctx, options)
            layout = chunks.layout()
            keep = chunks.resume_at(common_prefix(self._cached, layout))
            if not llama_cpp.llama_memory_seq_rm(self._memory, 0, keep, -1):
                # Recurrent layers cannot drop a tail: back to a checkpoint, else read it all again.
                keep = self._checkpoints.restore(self._memory, layout, keep)
                if not keep:
                    llama_cpp.llama_memory_seq_rm(self._memory, 0, 0, -1)
            del self._cached[keep:]
            del self._scored[keep:]
            marked = checkpoint_positions_with_images(chunks, prompt, marks, self._vocab.special_piece)
            checkpoint_at = [m for m in marked if keep < m]
            sampler = sampler_chain(options, self._vocab)
            try:
                reply = self._reply(
                    emit,
                    mode,
                    options,
                    cancel,
                    budget,
                    n_prompt=n_prompt,
                    cached=chunks.tokens_before(keep),
                    started=started,
                    image_tokens=chunks.image_tokens,
                )
                assert self._handles is not None  # generation runs only while the model is loaded
                lctx = self._handles.ctx.ctx
                pending = chunks.after(keep)
                # The last text part is read by the token loop, which then goes on to the reply.
                last_text = pending.pop().tokens if pending and isinstance(pending[-1], TextPart) else []
                for i, part in enumerate(pending):
                    if isinstance(part, TextPart):
                        self._read(part.tokens, checkpoint_at, logits=False)
                    else:
                        at = len(self._cached)
                        logits = not last_text and i == len(pending) - 1
                        projector.evaluate(lctx, part, at, self._n_batch, logits_last=logits)
                        self._cached.extend([part.key] * part.n_pos)
                        self._checkpoint_if_due(checkpoint_at)
                    if cancel.is_set():  # between images, which may take seconds each
                        reply.finish("cancelled")
                        return
                generated = self._tokens(last_text, self._picker(options, sampler), checkpoint_at)
                try:
                    reply.run(self._governor.watch(generated))
                finally:
                    generated.close()
            finally:
                sampler.close()
        finally:
            chunks.close()

    def _reply(
        self,
        emit: Callable[[Chunk], None],
        mode: Mode,
        options: GenerationOptions,
        cancel: threading.Event,
        budget: int,
        *,
        n_prompt: int,
        cached: int,
        started: float,
        image_tokens: tuple[int, ...] = (),
    ) -> Reply:
        """The reply loop for one request, with this load's vocabulary and thread governor."""
        governor = self._governor
        return Reply(
            emit,
            mode=mode,
            stops=options.stop,
            piece=self._vocab.piece,
            is_end=self._vocab.is_end,
            cancel=cancel,
            budget=budget,
            n_prompt=n_prompt,
            cached=cached,
            started=started,
            prompt_started=time.perf_counter(),  # tokenized, the cache trimmed: the prompt's evaluation starts
            threads=lambda: governor.lowered,
            image_tokens=image_tokens,
        )

    def _picker(self, options: GenerationOptions, sampler: Any) -> Picker:
        assert self._handles is not None  # generation runs only while the model is loaded
        return picker(self._handles.ctx.ctx, sampler.sampler, self._vocab.size, options)

    def _rows(self) -> RowReader:
        assert self._handles is not None
        return RowReader(self._handles.ctx.ctx, self._vocab.size, self._vocab.piece)

    def _keep_for_scoring(self, tokens: list[int], top_n: int) -> int:
        """How many cached tokens a scored prompt keeps: those whose log-probabilities the last
        scored prompt left, less one, whose logits row must be computed again to score the next
        token (so at least one token is decoded). A question's choices share its context this way."""
        import llama_cpp

        reuse = common_prefix(self._cached, tokens) if top_n == self._scored_top else 0
        keep = max(0, min(reuse, len(self._scored)) - 1)
        if not llama_cpp.llama_memory_seq_rm(self._memory, 0, keep, -1):
            keep = 0  # recurrent layers cannot drop a tail: read it all again
            llama_cpp.llama_memory_seq_rm(self._memory, 0, 0, -1)
        del self._cached[keep:]
        del self._scored[keep + 1 :]
        if not keep:
            self._scored = [first_prompt_token(tokens[0], self._vocab.special_piece)]
        self._scored_top = top_n
        return keep

    def _score_prompt(self, tokens: list[int], keep: int, top_n: int) -> tuple[TokenLogprob, ...]:
        """Decode the prompt after the `keep` cached tokens with logits at every position, and
        read each token's log-probability from the row before it; the last row is left for the
        first reply token."""
        assert self._handles is not None
        rows = RowReader(self._handles.ctx.ctx, self._vocab.size, self._vocab.special_piece)
        scored = self._scored  # the first keep + 1 entries, from `_keep_for_scoring`
        at = keep
        while at < len(tokens):
            part = tokens[at : at + self._n_batch]
            self._decode(part, logits=True, every=True)
            # Row j of this batch predicts the token after it.
            scored += [rows.read(j, tokens[at + j + 1], top_n) for j in range(len(part)) if at + j + 1 < len(tokens)]
            at += len(part)
        return tuple(scored)

    def _tokens(
        self,
        pending: list[int],
        pick: Picker,
        checkpoint_at: Sequence[int] = (),
        *,
        thinking: ThinkingBudget | None = None,
        record: Callable[[int], None] | None = None,
    ) -> Generator[int, None, None]:
        """Decode `pending` after the cached tokens, then sample a token and decode it, for as long
        as the reply pulls. A hybrid model's state is saved at each of `checkpoint_at` (prompt
        positions, ascending) on the way (llama_memory.py): a slice of the prompt ends there.
        `pick(-1)` (`_picker`) chooses a token from the last logits row. `thinking`: once its
        budget is spent, the end of thinking is forced instead of picked. `record(token)`, if
        given, reads the token's log-probability from its row."""
        self._read(pending, list(checkpoint_at), logits=True)
        assert self._handles is not None
        between = self._engine.between  # other contexts' short jobs go between our tokens
        decode, cached = self._handles.batch.token_decoder(self._handles.ctx.ctx), self._cached
        forced: list[int] = []
        while True:
            if forced:
                token = forced.pop(0)
                pick.accept(token)  # penalties see it as the reply's own
            else:
                token = pick(-1)
            if record is not None:
                record(token)
            yield token
            between()
            status = decode(token, len(cached))  # `_decode([token], logits=True)` in fewer steps
            if status != 0:
                self._decode_failed(status)
            cached.append(token)
            if thinking is not None and not forced:
                forced = thinking.after(token)

    def _read(self, pending: Sequence[int], checkpoint_at: list[int], *, logits: bool) -> None:
        """Decode `pending` after the cached positions, in batches that end at each of
        `checkpoint_at` (ascending positions, consumed) so a hybrid model's state is saved
        there; logits for the last token if asked."""
        end = len(self._cached) + len(pending)
        at = 0
        while at < len(pending):
            stop = next((m for m in checkpoint_at if len(self._cached) < m <= end), end)
            upto = min(stop - len(self._cached), self._n_batch)
            self._engine.between()  # other contexts' short jobs go between our batches and tokens
            self._decode(list(pending[at : at + upto]), logits=logits and at + upto >= len(pending))
            at += upto
            self._checkpoint_if_due(checkpoint_at)

    def _checkpoint_if_due(self, checkpoint_at: list[int]) -> None:
        """Save a hybrid model's state if the cache has just reached the next checkpoint."""
        while checkpoint_at and checkpoint_at[0] <= len(self._cached):
            if checkpoint_at.pop(0) == len(self._cached):
                self._checkpoints.save(self._cached)

    def _decode(self, tokens: list[int], *, logits: bool, every: bool = False) -> None:
        """Put `tokens` into the KV cache after what it holds (logits for the last one if asked,
        for all of them with `every`); `_cached` always says what the cache holds."""
        import llama_cpp

        assert self._handles is not None
        batch, cached = self._handles.batch.batch, self._cached
        start = len(cached)
        # Every entry is in sequence 0 (`_load_on_engine` wrote that once).
        self._handles.batch.write_run(tokens, start, logits=every)
        batch.logits[len(tokens) - 1] = logits
        batch.n_tokens = len(tokens)
        status = llama_cpp.llama_decode(self._handles.ctx.ctx, batch)
        if status != 0:
            self._decode_failed(status)
        cached.extend(tokens)

    def _decode_failed(self, status: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._memory, 0, 0, -1)  # what it holds now is unknown
        self._cached.clear()
        self._scored.clear()
        raise InvalidModelFile(f"llama.cpp failed while generating (llama_decode returned {status})")

    def close(self) -> None:
        def free() -> None:
            if self._projector is not None:
                self._projector.close()
                self._projector = None
            if self._handles is not None:
                self._handles.close()
                self._handles = None

        self._engine.call(free)  # the engine thread is the process's: it stays
