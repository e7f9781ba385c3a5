"""The torch backend: a Hugging Face folder (safetensors) through transformers, on CUDA or CPU.

Like the llama.cpp backend it renders the model's own chat template (`torch_vocab`), runs every
engine call on one `EngineThread` and hands each sampled token to a `Reply` (UTF-8, thinking,
stop strings, the last chunk).

Its own decode loop instead of `model.generate` + a streamer: one forward per token with a
`DynamicCache`, sampling on the top-k candidates only (`torch_sampler`), and a cancellation
check between tokens. The cache survives the request, so the next REPL turn re-evaluates only
what changed. Output held to JSON, a schema or a tool-call grammar goes through xgrammar
(`torch_grammar`). A Qwen-VL folder loads with its vision tower and takes images (`torch_vision`:
the image pads in the prompt, their M-RoPE positions). The folder is vetted first
(`formats.hf_folder`: no pickles, no repo code unless allowed). torch is imported only in the torch_* modules.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import sampling
from ..chat import Chunk, GenerationOptions, Image, Message
from ..errors import InvalidModelFile, NoVision, UsageError
from ..formats import hf_folder
from ..hardware import physical_cores
from ..thinking import Mode
from .base import Backend, ChunkStream, LoadOptions, ModelInfo
from .engine_thread import EngineThread
from .local import DEFAULT_CONTEXT, common_prefix, images_overflow, reply_budget
from .pipeline import as_rendered, chat_prompt, reply_mode
from .reply import Reply
from .thinking_budget import FORCED_END, ThinkingBudget
from .torch_device import pick_device, pick_dtype
from .torch_grammar import Grammars
from .torch_sampler import Sampler
from .torch_vision import TorchVision, VisionPrompt, reply_positions
from .torch_vocab import TorchVocab

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class TorchBackend(Backend):
    def __init__(self, folder: Path, load: LoadOptions = LoadOptions(), *, name: str | None = None):
        started = time.perf_counter()
        self.folder = Path(folder)
        config = hf_folder.check_folder(
            self.folder, allow_pickle=load.allow_pickle, trust_remote_code=load.trust_remote_code
        )
        self._load_options = load
        self.device = pick_device(load.device)
        quant = (config.get("quantization_config") or {}).get("quant_method")
        self.dtype = pick_dtype(self.device, bool(quant))
        self._threads = load.threads or physical_cores()
        self._engine = EngineThread("torch")
        self._cache: Any = None
        self._cached_ids: list[int | str] = []  # token ids; an image's sha256 at its pads (torch_vision)
        self._vision: TorchVision | None = None
        try:
            self._engine.call(self._load_on_engine, load, config)
        except BaseException:
            self._engine.close(timeout=5)
            raise
        vocab = TorchVocab(self.tokenizer, self.folder, config)
        self.template = vocab.template
        model_type = str(config.get("model_type") or "")
        self.family = sampling.family_of(model_type, name or self.folder.name)
        self._generation_defaults = hf_folder.generation_defaults(self.folder)
        self._end_tokens = vocab.end_tokens
        self._vocab = vocab
        self._piece = vocab.piece
        self._grammars = Grammars(self.tokenizer, self._logits_size, self._end_tokens)
        trained = self._trained = hf_folder.trained_context(config)
        self._context_fixed = load.context_length is not None
        if load.context_length:
            n_ctx, reason = load.context_length, f"--ctx {load.context_length}"
        else:
            n_ctx = min(DEFAULT_CONTEXT, trained or DEFAULT_CONTEXT)
            reason = f"{n_ctx} (default; trained {trained or 'unknown'}; the KV cache grows as needed)"
        size = sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))
        self.info = ModelInfo(
            name=name or self.folder.name,
            backend="torch",
            context_length=n_ctx,
            trained_context=trained,
            family=self.family,
            architecture=model_type or None,
            path=self.folder,
            parameters=self._parameters,
            quantization=str(quant).lower() if quant else str(self.dtype).removeprefix("torch."),
            size_bytes=size,
            supports_thinking=self.template.supports_thinking,
            thinking=self.template.thinking_control,
            supports_tools=self.template.supports_tools,
            tool_dialect=self.template.tool_dialect,
            load_seconds=time.perf_counter() - started,
            threads=self._threads if self.device == "cpu" else None,
            context_reason=f"{reason} · {self.device} {str(self.dtype).removeprefix('torch.')}",
            vision_tower=self._vision is not None,
        )

    # -- loading ---------------------------------------------------------------------------

    def _load_on_engine(self, load: LoadOptions, config: dict[str, Any]) -> None:
        import transformers
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

        # check_folder has vetted both: pickles only when there are no safetensors and the user allowed them.
        safetensors = hf_folder.has_safetensors(self.folder) or not load.allow_pickle
        remote_code = load.trust_remote_code
        if not load.verbose:
            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
        if self.device == "cpu":
            torch.set_num_threads(self._threads)
        # The vision tower too, when the folder has one: transformers 5's positions API (torch_vision.py).
        vision = hf_folder.has_vision_tower(self.folder, config) and int(transformers.__version__.split(".")[0]) >= 5
        auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.folder, local_files_only=True, trust_remote_code=remote_code
            )
            #: None once close() has freed it (nothing generates after that).
            self.model: PreTrainedModel | None = auto.from_pretrained(
                self.folder,
                dtype=self.dtype,
                device_map=self.device if self.device != "cpu" else None,
                use_safetensors=safetensors,
                trust_remote_code=remote_code,
                local_files_only=True,
            )
            if vision:
                self._vision = TorchVision(self.folder, self.model, load)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InvalidModelFile(
                f"transformers could not load {self.folder.name}: {str(exc).splitlines()[0]}",
                "qwen doctor shows the torch and transformers versions",
            ) from None
        if self.device == "cpu":
            # transformers types `to` as if `self` were its first argument.
            self.model.to("cpu")  # type: ignore[arg-type]
        self.model.eval()
        self._parameters = sum(p.numel() for p in self.model.parameters())
        self._logits_size = self.model.get_output_embeddings().weight.shape[0]  # ≥ the tokenizer's
        # transformers 5 renamed forward's `past_key_values` to `cache`.
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def ensure_context(self, needed: int) -> bool:
        """The KV cache grows as it goes: raising the limit only needs room in the trained length."""
        if needed <= self.info.context_length:
            return True
        if self._context_fixed or needed > (self._trained or DEFAULT_CONTEXT):
            return False
        target = min(self._trained or needed, -(-needed // 1024) * 1024)
        self.info = dataclasses.replace(
            self.info,
            context_length=target,
            context_reason=f"{target} (raised for a long prompt; trained {self._trained})",
        )
        return True

    # -- prompts ---------------------------------------------------------------------------

    def render(
        self, messages: Sequence[Message], options: GenerationOptions, tools: Sequence[dict] | None = None
    ) -> str:
        return chat_prompt(self.template, messages, options, tools)

    def tokenize(self, text: str) -> list[int]:
        return self._vocab.tokenize(text)

    def count_prompt_tokens(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict] | None = None
    ) -> int:
        images = self._images(messages)  # before rendering: a text model's template may choke on parts
        prompt = self.render(messages, options, tools)
        if images:
            return len(self._with_images(prompt, images).ids)
        return len(self.tokenize(prompt))

    def _images(self, messages: Sequence[Message]) -> list[Image]:
        """The images of a conversation, in prompt order; NoVision if this load cannot see them."""
        images = [image for m in messages for image in m.images]
        if images and self._vision is None:
            raise NoVision(
                f"{self.info.name} has no vision tower to read images with",
                hint="a Qwen-VL folder (vision_config and preprocessor_config.json) reads them, with transformers 5",
            )
        return images

    def _with_images(self, prompt: str, images: Sequence[Image]) -> VisionPrompt:
        assert self._vision is not None  # _images() said so
        return self._vision.prepare(prompt, images, self.tokenize)

    # -- generation ------------------------------------------------------------------------

    def chat(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Sequence[dict] | None = None
    ) -> ChunkStream:
        images = self._images(messages)
        prompt = self.render(messages, options, tools)
        mode = reply_mode(self.template, prompt, options)
        return self._stream(prompt, as_rendered(options, mode), mode, images)

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream:
        return self._stream(prompt, options, "text")

    def _options(self, options: GenerationOptions) -> GenerationOptions:
        # The repo's generation_config holds one set: a two-mode family's thinking one.
        if not (options.think is False and self.family in sampling.THINK_OFF):
            options = options.merged_over(self._generation_defaults)
        return sampling.resolve(options, self.family)

    def _stream(self, prompt: str, options: GenerationOptions, mode: Mode, images: Sequence[Image] = ()) -> ChunkStream:
        options = self._options(options)
        vision = self._with_images(prompt, images) if images else None
        ids = vision.ids if vision else self.tokenize(prompt)
        return self._engine.emitting(lambda cancel, emit: self._generate(ids, options, mode, cancel, emit, vision))

    def _generate(
        self,
        ids: list[int],
        options: GenerationOptions,
        mode: Mode,
        cancel: threading.Event,
        emit: Callable[[Chunk], None],
        vision: VisionPrompt | None = None,
    ) -> None:
        started = time.perf_counter()
        if vision is not None and len(ids) >= self.info.context_length:
            raise images_overflow(len(ids), vision.image_tokens, self.info.context_length)
        budget = reply_budget(len(ids), self.info.context_length, options)
        if not ids:
            raise UsageError("the prompt is empty")
        sampler = Sampler(options, self.device)
        constraint = self._grammars.constraint(options)
        model, device, tower = self.model, self.device, self._vision
        assert model is not None, "generating on a closed backend"
        # Penalties look at the reply's own tokens, as llama.cpp's samplers do (they see only what
        # they sampled) and as Qwen's presence_penalty 1.5 is meant: not at the question's words.
        recent: list[int] = []
        keys: Sequence[int | str] = vision.keys if vision else ids
        cached = self._reuse_cache(keys, vision)
        cache, cache_arg = self._cache, self._cache_arg
        fed = self._cached_ids  # what the cache holds, kept exact as tokens go in
        end_tokens = self._end_tokens
        thinking = None
        if options.thinking_budget is not None and mode != "text":
            end = self._vocab.tokenize(FORCED_END)  # HF tokenizers parse added tokens such as </think>
            thinking = ThinkingBudget(options.thinking_budget, mode, end, self._piece)

        def tokens() -> Iterator[int]:
            # One forward per token; when the reply stops pulling, no forward runs for nothing.
            step = torch.tensor([ids[cached:]], device=device)
            extra: dict[str, Any] = {}
            delta = 0
            if vision is not None:
                assert tower is not None  # a VisionPrompt comes only from it
                extra, delta = tower.first_forward(vision, cached, device)
            logits = model(input_ids=step, **{cache_arg: cache}, use_cache=True, logits_to_keep=1, **extra).logits
            fed.extend(keys[cached:])
            forced: list[int] = []
            while True:
                if forced:  # the end of thinking, its budget spent (thinking_budget.py)
                    token = forced.pop(0)
                else:
                    row = logits[0, -1] if constraint is None else constraint.mask(logits[0, -1])
                    token = sampler(row, recent)
                    if constraint is not None and token not in end_tokens:
                        constraint.accept(token)
                yield token
                if thinking is not None and not forced:
                    forced = thinking.after(token)
                if sampler.penalised:
                    recent.append(token)
                step = torch.tensor([[token]], device=device)
                if vision is not None:
                    extra = reply_positions(len(fed), delta, device)
                logits = model(input_ids=step, **{cache_arg: cache}, use_cache=True, **extra).logits
                fed.append(token)

        reply = Reply(
            emit,
            mode=mode,
            stops=options.stop,
            piece=self._piece,
            is_end=end_tokens.__contains__,
            cancel=cancel,
            budget=budget,
            n_prompt=len(ids),
            cached=cached,
            started=started,
            image_tokens=vision.image_tokens if vision else (),
        )
        try:
            with torch.inference_mode():
                reply.run(tokens())
        except BaseException:
            self._cache, self._cached_ids = None, []  # a half-updated cache must not be reused
            raise

    def _reuse_cache(self, ids: Sequence[int | str], vision: VisionPrompt | None = None) -> int:
        """Keep the KV cache of the longest common prefix with the last request; returns its length.
        At least one prompt token is always evaluated again, for the logits of the next token."""
        from transformers import DynamicCache

        cached = min(common_prefix(self._cached_ids, ids), len(ids) - 1)
        if vision is not None:
            cached = vision.cut(cached)
        if self._cache is not None and cached > 0:
            drop = len(self._cached_ids) - cached
            if drop and not getattr(self._cache, "is_croppable", True):
                cached = 0  # e.g. sliding-window or linear-attention layers: start over
            else:
                if drop:
                    self._cache.crop(-drop)  # negative: remove that many (transformers 4.x and 5.x)
                    del self._cached_ids[cached:]
                return cached
        assert self.model is not None, "generating on a closed backend"
        self._cache = DynamicCache(config=self.model.config)
        self._cached_ids = []
        return 0

    def close(self) -> None:
        def free() -> None:
            self._cache = None
            self.model = None
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()

        try:
            self._engine.call(free)
        finally:
            self._engine.close(timeout=5)
