"""The llama.cpp backend, over llama-cpp-python's low-level token loop.

Why not `create_chat_completion(stream=True)`: it re-detokenizes the whole reply on every token
(180–510 µs a token here) and renders templates its own way. We render the model's template
ourselves (`qwencli.templates`), run `Llama.generate()` and decode each token's bytes once, so the
Python cost per token stays flat (~50 µs) and `make bench` shows no gap to the raw engine.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import sampling
from ..chat import Chunk, GenerationOptions, Message
from ..errors import InvalidModelFile
from ..formats.gguf import read_model
from ..hardware import available_memory, physical_cores
from ..thinking import Mode
from .base import Backend, ChunkStream, LoadOptions
from .cpu_contention import ThreadGovernor
from .engine_thread import EngineThread
from .llama_grammar import gbnf
from .llama_load import choose_context_length, gpu_layers, model_info, quiet_load, raised_context
from .llama_memory import RecurrentCheckpoints, checkpoint_positions, reuse
from .llama_vocab import LlamaVocab
from .local import grammar_rejected, reply_budget
from .pipeline import as_rendered, chat_prompt, checkpoint_prefixes, reply_mode
from .reply import Reply


class LlamaCppBackend(Backend):
    def __init__(self, path: Path, load: LoadOptions = LoadOptions(), *, name: str | None = None):
        started = time.perf_counter()
        self.model = read_model(Path(path))
        self._load_options = load
        self._threads = load.threads or physical_cores()
        self._engine = EngineThread("llama.cpp")
        self._llama: Any = None
        n_ctx, reason = choose_context_length(self.model, load.context_length, available_memory())
        self._context_fixed = load.context_length is not None
        self._engine.call(self._load_on_engine, n_ctx)
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
        self.family = self.info.family

    # -- loading ---------------------------------------------------------------------------

    def _load_on_engine(self, n_ctx: int) -> None:
        import llama_cpp

        load = self._load_options
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        self._gpu_layers = gpu_layers(load)
        with quiet_load(self.model, load.verbose):
            self._llama = llama_cpp.Llama(
                model_path=str(self.model.path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
                n_ubatch=min(512, n_ctx),
                n_threads=self._threads,
                n_threads_batch=self._threads,
                n_gpu_layers=self._gpu_layers,
                chat_format="chatml",  # unused: we render templates ourselves; skips the guessing
                verbose=True,  # see quiet_load
            )
        self._llama.verbose = load.verbose
        self._n_ctx = n_ctx
        self._vocab = LlamaVocab(self._llama.model, self.model)
        ctx = self._llama.ctx
        self._checkpoints = RecurrentCheckpoints(self._llama.model, ctx)
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
        prompt = self.render(messages, options, tools)
        return len(self._engine.call(self._tokenize, prompt))

    # -- generation ------------------------------------------------------------------------

    def chat(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict] | None = None
    ) -> ChunkStream:
        prompt = self.render(messages, options, tools)
        mode = reply_mode(self.template, prompt, options)
        # Hybrid models checkpoint their memory where a later prompt may part (llama_memory.py).
        marks = (
            checkpoint_prefixes(self.template, messages, options, tools, prompt) if self._checkpoints.enabled else ()
        )
        return self._stream(prompt, as_rendered(options, mode), mode, marks)

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream:
        return self._stream(prompt, options, "text")

    def _stream(self, prompt: str, options: GenerationOptions, mode: Mode, marks: Sequence[str] = ()) -> ChunkStream:
        options = sampling.resolve(options, self.family)
        return self._engine.emitting(lambda cancel, emit: self._generate(prompt, options, mode, cancel, emit, marks))

    def _generate(
        self,
        prompt: str,
        options: GenerationOptions,
        mode: Mode,
        cancel: threading.Event,
        emit: Callable[[Chunk], None],
        marks: Sequence[str] = (),
    ) -> None:
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        llama, vocab = self._llama, self._vocab
        started = time.perf_counter()
        tokens = vocab.tokenize(prompt)
        budget = reply_budget(len(tokens), self._n_ctx, options)
        grammar_text = gbnf(options)
        try:
            grammar = LlamaGrammar.from_string(grammar_text, verbose=False) if grammar_text else None
        except Exception as exc:
            raise grammar_rejected(str(exc)) from None
        llama.set_seed(options.seed if options.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        governor = self._governor
        reply = Reply(
            emit,
            mode=mode,
            stops=options.stop,
            piece=vocab.piece,
            is_end=vocab.is_end,
            cancel=cancel,
            budget=budget,
            n_prompt=len(tokens),
            cached=0,  # known once the memory is brought up to date
            started=started,
            threads=lambda: governor.lowered,
        )
        generator = llama.generate(
            tokens,
            top_k=options.top_k,
            top_p=options.top_p,
            min_p=options.min_p,
            temp=options.temperature,
            repeat_penalty=options.repeat_penalty,
            presence_penalty=options.presence_penalty or 0.0,
            frequency_penalty=options.frequency_penalty or 0.0,
            grammar=grammar,
        )
        try:
            reply.run(governor.watch(self._reused_then(reply, tokens, marks, generator)))
        except RuntimeError as exc:  # llama_decode failed
            raise InvalidModelFile(f"llama.cpp failed while generating: {exc}") from None
        finally:
            generator.close()

    def _reused_then(self, reply: Reply, tokens: list[int], marks: Sequence[str], generator: Any) -> Any:
        """The memory is brought up to the prompt (llama_memory.reuse) inside the thread
        governor's watch, as generate()'s own prompt reading is: it may read most of the prompt."""
        positions = checkpoint_positions(self._vocab, tokens, marks)
        reply.n_cached = reuse(self._llama, self._checkpoints, tokens, positions)
        yield from generator

    def close(self) -> None:
        def free() -> None:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

        try:
            self._engine.call(free)
        finally:
            self._engine.close(timeout=5)
