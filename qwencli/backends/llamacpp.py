"""The llama.cpp backend, over llama-cpp-python's low-level token loop.

Why not `create_chat_completion(stream=True)`: it re-detokenizes the whole reply on every token
(180–510 µs a token here) and renders templates its own way. We render the model's template
ourselves (`qwencli.templates`), run `Llama.generate()` and decode each token's bytes once, so the
Python cost per token stays flat (~50 µs) and `make bench` shows no gap to the raw engine.
"""

from __future__ import annotations

import collections
import ctypes
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from .. import sampling
from ..chat import Chunk, GenerationOptions, Message
from ..errors import ContextOverflow, InvalidModelFile, UsageError
from ..hardware import available_memory, physical_cores
from .cpu_contention import ThreadGovernor
from ..models.gguf_file import GGUFModel, read_model
from ..templates import ChatTemplate
from .base import Backend, ChunkStream, LoadOptions, ModelInfo
from .engine_thread import EngineThread
from .pipeline import TextPipeline, chat_prompt, reply_mode, token_chunks

#: Default context ceiling when the user sets none: enough for long chats, cheap in KV memory.
#: A prompt that needs more raises it (see `ensure_context`), up to the trained length.
DEFAULT_CONTEXT = 8192
MIN_CONTEXT = 512
#: Share of free memory (after the weights) the KV cache may take by default.
KV_MEMORY_SHARE = 0.5
END_OF_TURN_TEXTS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


class _LlamaLog:
    """llama.cpp's log, kept off the terminal unless --verbose; the last lines explain load errors."""

    def __init__(self) -> None:
        self.verbose = False
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        self._partial = ""
        self._callback = None

    def install(self) -> None:
        import llama_cpp

        @llama_cpp.llama_log_callback
        def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            message = text.decode("utf-8", errors="replace")
            if self.verbose:
                sys.stderr.write(message)
            self._partial += message
            *done, self._partial = self._partial.split("\n")
            self.lines.extend(line for line in done if line.strip())

        self._callback = on_log  # keep the ctypes callback alive
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))

    def last_error(self) -> str | None:
        for line in reversed(self.lines):
            if "error" in line.lower() or "failed" in line.lower():
                return line.strip()
        return None


_LOG = _LlamaLog()
_LOG_LOCK = threading.Lock()


def choose_context_length(model: GGUFModel, requested: int | None, free_memory: int) -> tuple[int, str]:
    """The context to allocate and why. Never llama-cpp-python's 512 default."""
    trained = model.context_length
    if requested:
        if trained and requested > trained:
            return requested, f"--ctx {requested} (above the trained {trained}; quality may drop)"
        return requested, f"--ctx {requested}"
    per_token = max(model.kv_bytes_per_token(), 1)
    fits = int(max(free_memory - model.size, 0) * KV_MEMORY_SHARE // per_token)
    candidates = {"default": DEFAULT_CONTEXT, "free memory": fits}
    if trained:
        candidates["trained length"] = trained
    reason, n_ctx = min(candidates.items(), key=lambda kv: kv[1])
    n_ctx = max(MIN_CONTEXT, n_ctx // 256 * 256 if n_ctx >= 256 else n_ctx)
    return n_ctx, f"{n_ctx} ({reason}; trained {trained or 'unknown'})"


def _grammar_text(options: GenerationOptions) -> tuple[str | None, str | None]:
    """(GBNF text, JSON schema text) for the options' response format."""
    if options.grammar:
        return options.grammar, None
    if options.response_format == "json":
        from llama_cpp.llama_grammar import JSON_GBNF

        return JSON_GBNF, None
    if isinstance(options.response_format, dict):
        return None, json.dumps(options.response_format)
    return None, None


class LlamaCppBackend(Backend):
    backend_name = "llama.cpp"

    def __init__(self, path: Path, load: LoadOptions = LoadOptions(), *, name: str | None = None):
        started = time.perf_counter()
        self.model = read_model(Path(path))
        metadata = self.model.metadata
        self._load_options = load
        self.family = sampling.family_of(self.model.architecture, self.model.name)
        self._engine = self._new_engine()
        self._llama: Any = None
        n_ctx, reason = choose_context_length(self.model, load.context_length, available_memory())
        self._context_fixed = load.context_length is not None
        self._load(n_ctx)
        bos = self._token_text(metadata.get("tokenizer.ggml.bos_token_id"))
        eos = self._token_text(metadata.get("tokenizer.ggml.eos_token_id"))
        self.template = ChatTemplate(self.model.chat_template, bos_token=bos, eos_token=eos)
        self._add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
        self._bos_text = bos
        self._end_tokens = self._end_of_turn_tokens()
        self._pieces: dict[int, bytes] = {}
        self.info = ModelInfo(
            name=name or self.model.path.name,
            backend=self.backend_name,
            context_length=n_ctx,
            trained_context=self.model.context_length,
            family=self.family,
            architecture=self.model.architecture,
            path=self.model.path,
            parameters=self.model.parameter_count,
            quantization=self.model.quantization,
            size_bytes=self.model.size,
            supports_thinking=self.template.supports_thinking,
            supports_tools=self.template.supports_tools,
            load_seconds=time.perf_counter() - started,
            threads=self._threads,
            gpu_layers=self._gpu_layers,
            context_reason=reason,
        )

    # -- loading ---------------------------------------------------------------------------

    def _new_engine(self) -> EngineThread:
        """The thread all of this model's llama.cpp calls run on (the batched server backend
        brings one that also runs decode steps between calls)."""
        return EngineThread("llama.cpp")

    def _load(self, n_ctx: int) -> None:
        load = self._load_options
        self._threads = load.threads or physical_cores()
        self._engine.call(self._load_on_engine, n_ctx, load)

    def _prepare_load(self, load: LoadOptions) -> None:
        """Before a load (on the engine thread): our log callback, and how many layers go to the GPU."""
        import llama_cpp

        with _LOG_LOCK:
            if _LOG._callback is None:
                _LOG.install()
            _LOG.verbose = load.verbose
        if load.gpu_layers is not None:
            self._gpu_layers = load.gpu_layers
        else:
            self._gpu_layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0

    def _load_on_engine(self, n_ctx: int, load: LoadOptions) -> None:
        import io
        import llama_cpp

        self._prepare_load(load)
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        # verbose=True keeps llama-cpp-python from dup2-ing fds 1 and 2 to /dev/null, which is
        # process-wide and races with other threads; its own prints are caught here instead and
        # llama.cpp's log goes through our callback.
        saved, sys.stderr = sys.stderr, io.StringIO()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(self.model.path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
                n_ubatch=min(512, n_ctx),
                n_threads=self._threads,
                n_threads_batch=self._threads,
                n_gpu_layers=self._gpu_layers,
                chat_format="chatml",  # unused: we render templates ourselves; skips the guessing
                verbose=True,
            )
        except Exception as exc:
            detail = _LOG.last_error() or str(exc)
            raise InvalidModelFile(
                f"llama.cpp could not load {self.model.path.name}: {detail}",
                "the file may be damaged or need a newer llama-cpp-python (qwen doctor)",
            ) from None
        finally:
            sys.stderr = saved
        self._llama.verbose = load.verbose
        self._n_ctx = n_ctx
        ctx = self._llama.ctx
        # A thread count the user gave is kept as given.
        self._governor = ThreadGovernor(self._threads, lambda n: llama_cpp.llama_set_n_threads(ctx, n, n),
                                        fixed=load.threads is not None)

    def ensure_context(self, needed: int) -> bool:
        """Grow the context to hold `needed` tokens if the user did not fix it; True if it does."""
        if needed <= self.info.context_length:
            return True
        if self._context_fixed:
            return False
        trained = self.model.context_length or DEFAULT_CONTEXT
        per_token = max(self.model.kv_bytes_per_token(), 1)
        fits = int(max(available_memory() - self.model.size, 0) * KV_MEMORY_SHARE // per_token)
        target = min(trained, fits, -(-needed // 1024) * 1024)
        if target < needed:
            return False
        started = time.perf_counter()
        self._load(target)
        self._pieces.clear()
        import dataclasses

        self.info = dataclasses.replace(
            self.info,
            context_length=target,
            context_reason=f"{target} (raised for a long prompt; trained {self.model.context_length})",
            load_seconds=self.info.load_seconds + time.perf_counter() - started,
        )
        return True

    def _token_text(self, token: Any) -> str:
        if not isinstance(token, int) or token < 0:
            return ""
        return self._engine.call(lambda: self._llama._model.token_get_text(token))

    def _end_of_turn_tokens(self) -> frozenset[int]:
        def find() -> set[int]:
            ids = set()
            for text in END_OF_TURN_TEXTS:
                tokens = self._llama.tokenize(text.encode(), add_bos=False, special=True)
                if len(tokens) == 1:
                    ids.add(tokens[0])
            eos = self._llama.token_eos()
            if eos >= 0:
                ids.add(eos)
            return ids

        return frozenset(self._engine.call(find))

    # -- prompts ---------------------------------------------------------------------------

    def render(
        self, messages: Sequence[Message], options: GenerationOptions, tools: Sequence[dict] | None = None
    ) -> str:
        return chat_prompt(self.template, messages, options, tools)

    def _tokenize(self, text: str) -> list[int]:
        add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

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
        return self._stream(prompt, options, reply_mode(self.template, prompt, options))

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream:
        return self._stream(prompt, options, "text")

    def _stream(self, prompt: str, options: GenerationOptions, mode) -> ChunkStream:
        options = sampling.resolve(options, self.family)
        return self._engine.stream(lambda cancel: self._generate(prompt, options, mode, cancel))

    def _generate(self, prompt: str, options: GenerationOptions, mode, cancel: threading.Event) -> Iterator[Chunk]:
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        llama = self._llama
        started = time.perf_counter()
        tokens = self._tokenize(prompt)
        n_prompt = len(tokens)
        if n_prompt >= self._n_ctx:
            raise ContextOverflow(
                f"the prompt is {n_prompt} tokens but the context holds {self._n_ctx}",
                "shorten the input or raise the context with --ctx",
            )
        # At least the last prompt token is evaluated again: its logits give the first reply token.
        cached = min(common_prefix(llama.input_ids[: llama.n_tokens], tokens), len(tokens) - 1)
        budget = self._n_ctx - n_prompt
        if options.max_tokens is not None:
            budget = min(budget, options.max_tokens)
        gbnf, schema = _grammar_text(options)
        try:
            grammar = (
                LlamaGrammar.from_json_schema(schema, verbose=False)
                if schema
                else LlamaGrammar.from_string(gbnf, verbose=False) if gbnf else None
            )
        except Exception as exc:
            raise UsageError(f"cannot turn the response format into a grammar: {exc}", param="response_format") from None
        if options.seed is not None:
            llama.set_seed(options.seed)
        else:
            llama.set_seed(llama_cpp.LLAMA_DEFAULT_SEED)
        pipeline = TextPipeline(mode, options.stop)
        vocab = llama._model.vocab
        end_tokens = self._end_tokens
        is_eog = llama_cpp.llama_vocab_is_eog
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
            governor = self._governor
            yield from token_chunks(governor.watch(generator), pipeline, piece=self._piece,
                                    is_end=lambda token: token in end_tokens or is_eog(vocab, token),
                                    cancel=cancel, budget=budget, started=started, n_prompt=n_prompt, cached=cached,
                                    lowered_threads=lambda: governor.lowered)
        except RuntimeError as exc:  # llama_decode failed
            raise InvalidModelFile(f"llama.cpp failed while generating: {exc}") from None
        finally:
            generator.close()

    def _piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            import llama_cpp

            buf = ctypes.create_string_buffer(256)
            n = llama_cpp.llama_token_to_piece(self._llama._model.vocab, token, buf, 256, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._llama._model.vocab, token, buf, -n, 0, False)
            cached = self._pieces[token] = buf.raw[:n]
        return cached

    def close(self) -> None:
        def free() -> None:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

        try:
            self._engine.call(free)
        finally:
            self._engine.close(timeout=5)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
