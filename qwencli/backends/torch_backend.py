"""The torch backend: a Hugging Face folder (safetensors) through transformers, on CUDA or CPU.

Like the llama.cpp backend it renders the model's own chat template (`qwencli.templates`, from the
folder's tokenizer_config.json), runs every engine call on one `EngineThread`, decodes each token's
bytes once (UTF-8 safe across tokens) and feeds the `TextPipeline` for thinking and stop strings.

Its own decode loop instead of `model.generate` + a streamer: one forward per token with a
`DynamicCache`, sampling on the top-k candidates only, and a cancellation check between tokens.
The cache survives the request, so the next REPL turn re-evaluates only what changed.

Output held to JSON, a schema or a tool-call grammar goes through xgrammar (`torch_grammar`).

Safety: only `*.safetensors` weights load and never a folder's own Python code, unless the user
says otherwise with `--allow-pickle` (pickle `.bin` weights, when there are no safetensors) or
`--trust-remote-code` (a folder whose config maps to its own classes). torch is imported in this
module only.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import threading
import time
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .. import sampling
from ..chat import Chunk, GenerationOptions, Message
from ..errors import BackendUnavailable, ContextOverflow, InvalidModelFile, UnsupportedModel, UsageError
from ..hardware import physical_cores
from ..templates import ChatTemplate
from .base import Backend, ChunkStream, LoadOptions, ModelInfo
from .engine_thread import EngineThread
from .llamacpp import DEFAULT_CONTEXT, END_OF_TURN_TEXTS, common_prefix
from .pipeline import TextPipeline, chat_prompt, reply_mode, token_chunks
from .torch_grammar import Grammars

#: Tokens the repetition penalties look back at (llama.cpp's repeat_last_n).
PENALTY_WINDOW = 64

#: quant_method → the packages transformers needs for it, and the install command.
QUANT_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "awq": (("gptqmodel", "accelerate"), "pip install gptqmodel accelerate"),
    "gptq": (("gptqmodel", "optimum"), "pip install gptqmodel optimum"),
    "fp8": (("accelerate",), "pip install accelerate"),
}
_MODULE_NAMES = {"gptqmodel": "gptqmodel", "accelerate": "accelerate", "optimum": "optimum"}


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def check_folder(folder: Path, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> dict[str, Any]:
    """The folder's config.json, after the safety and kernel checks; raise a QwenError otherwise."""
    config_path = folder / "config.json"
    if not folder.is_dir() or not config_path.is_file():
        raise InvalidModelFile(f"{folder} is not a Hugging Face model folder (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidModelFile(f"{config_path} is not valid JSON: {exc}") from None
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if not pickles:
            raise InvalidModelFile(f"{folder.name} has no *.safetensors weights")
        if not allow_pickle:
            raise InvalidModelFile(
                f"{folder.name} has only pickle weights ({pickles[0]}); qwencli refuses them by default: "
                "loading a pickle can run arbitrary code",
                "use the repo's safetensors version, or --allow-pickle if you trust where the file came from",
            )
    if config.get("auto_map") and not _known_model_type(config.get("model_type")) and not trust_remote_code:
        raise UnsupportedModel(
            f"{folder.name} needs its own Python code (trust_remote_code), which qwencli does not run by default",
            "read the folder's *.py files and pass --trust-remote-code if you trust them; "
            "or run its GGUF build with --backend llama",
        )
    method = str((config.get("quantization_config") or {}).get("quant_method") or "").lower()
    if method:
        packages, command = QUANT_PACKAGES.get(method, ((), ""))
        missing = [p for p in packages if find_spec(_MODULE_NAMES[p]) is None]
        if missing:
            raise BackendUnavailable(
                f"{folder.name} is {method.upper()}-quantized and its kernels need {', '.join(missing)}",
                f"{command} (or run the GGUF build: --backend llama)",
            )
    return config


def _known_model_type(model_type: Any) -> bool:
    from transformers import CONFIG_MAPPING

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def pick_device(requested: str | None) -> str:
    if requested:
        device = requested.strip().lower()
        if not (device in ("cpu", "cuda", "mps") or device.startswith("cuda:") and device[5:].isdigit()):
            raise UsageError(f"--device takes cpu, cuda, cuda:N or mps, not {requested!r}", param="device")
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise BackendUnavailable(
                    f"--device {device}: torch sees no CUDA GPU (torch {torch.__version__})",
                    "qwen doctor shows what is missing; --device cpu runs (slowly) on the CPU",
                )
            index = int(device[5:]) if ":" in device else 0
            if index >= torch.cuda.device_count():
                raise UsageError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices",
                                 param="device")
        if device == "mps" and not torch.backends.mps.is_available():
            raise BackendUnavailable("--device mps: torch sees no Metal GPU", "--device cpu")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, quantized: bool) -> "torch.dtype":
    """bf16 where the GPU supports it, else fp16; fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    if device.startswith("cuda"):
        if quantized:
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: the character a token uses → the byte it stands for."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def generation_defaults(folder: Path) -> GenerationOptions:
    """The sampling settings the repo's generation_config.json recommends."""
    try:
        data = json.loads((folder / "generation_config.json").read_text())
    except (OSError, ValueError):
        return GenerationOptions()
    if not isinstance(data, dict):
        return GenerationOptions()

    def number(key: str) -> float | None:
        value = data.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    temperature = number("temperature")
    if data.get("do_sample") is False:
        temperature = 0.0
    top_k = number("top_k")
    return GenerationOptions(temperature=temperature, top_p=number("top_p"),
                             top_k=int(top_k) if top_k is not None else None,
                             repeat_penalty=number("repetition_penalty"))


def _token_ids(value: Any) -> set[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, int)}
    return set()


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def chat_template_source(folder: Path, tok_config: dict[str, Any]) -> str | None:
    """The chat template a repo ships: chat_template.jinja (newer repos) or tokenizer_config.json's."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


class Sampler:
    """Sampling from one row of logits: penalties, temperature, top-k, min-p, top-p."""

    def __init__(self, options: GenerationOptions, device: str):
        self.temperature = options.temperature or 0.0
        self.top_k = options.top_k or 0
        self.top_p = 1.0 if options.top_p is None else options.top_p
        self.min_p = options.min_p or 0.0
        self.repeat = options.repeat_penalty or 1.0
        self.presence = options.presence_penalty or 0.0
        self.frequency = options.frequency_penalty or 0.0
        self.penalised = self.repeat != 1.0 or self.presence or self.frequency
        self.generator = None
        if self.temperature > 0:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(options.seed if options.seed is not None else int(time.time_ns() & 0xFFFFFFFF))

    def __call__(self, logits: "torch.Tensor", recent: list[int]) -> int:
        if self.penalised and recent:
            logits = self._penalise(logits.float(), recent[-PENALTY_WINDOW:])
        if self.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            values, ids = torch.topk(logits, self.top_k)
        else:
            values, ids = torch.sort(logits, descending=True)
        probs = torch.softmax(values, dim=-1)
        keep = torch.ones_like(probs, dtype=torch.bool)
        if self.min_p > 0:
            keep &= probs >= probs[0] * self.min_p
        if self.top_p < 1.0:
            keep &= (torch.cumsum(probs, dim=-1) - probs) < self.top_p
        keep[0] = True
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return int(ids[choice])

    def _penalise(self, logits: "torch.Tensor", recent: list[int]) -> "torch.Tensor":
        ids, counts = torch.tensor(recent, device=logits.device).unique(return_counts=True)
        picked = logits[ids]
        if self.repeat != 1.0:
            picked = torch.where(picked > 0, picked / self.repeat, picked * self.repeat)
        picked = picked - self.presence - self.frequency * counts.to(picked.dtype)
        logits = logits.clone()
        logits[ids] = picked
        return logits


class TorchBackend(Backend):
    backend_name = "torch"

    def __init__(self, folder: Path, load: LoadOptions = LoadOptions(), *, name: str | None = None):
        started = time.perf_counter()
        self.folder = Path(folder)
        config = check_folder(self.folder, allow_pickle=load.allow_pickle, trust_remote_code=load.trust_remote_code)
        self._load_options = load
        self.device = pick_device(load.device)
        quant = (config.get("quantization_config") or {}).get("quant_method")
        self.dtype = pick_dtype(self.device, bool(quant))
        self._threads = load.threads or physical_cores()
        self._engine = EngineThread("torch")
        self._cache: Any = None
        self._cached_ids: list[int] = []
        self._pieces: dict[int, bytes] = {}
        try:
            self._engine.call(self._load_on_engine, load)
        except BaseException:
            self._engine.close(timeout=5)
            raise
        tok_config = self._tokenizer_config()
        bos = _token_text(tok_config.get("bos_token")) or (self.tokenizer.bos_token or "")
        eos = _token_text(tok_config.get("eos_token")) or (self.tokenizer.eos_token or "")
        self.template = ChatTemplate(chat_template_source(self.folder, tok_config), bos_token=bos, eos_token=eos)
        model_type = str(config.get("model_type") or "")
        self.family = sampling.family_of(model_type, name or self.folder.name)
        self._generation_defaults = generation_defaults(self.folder)
        self._end_tokens = self._end_of_turn_tokens(config)
        self._grammars = Grammars(self.tokenizer, self._logits_size, self._end_tokens)
        self._special = set(self.tokenizer.all_special_ids)
        self._byte_level = type(getattr(self.tokenizer, "backend_tokenizer", None) and
                                self.tokenizer.backend_tokenizer.decoder).__name__ == "ByteLevel"
        trained = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
        trained = trained if isinstance(trained, int) and trained > 0 else None
        self._trained = trained
        self._context_fixed = load.context_length is not None
        if load.context_length:
            n_ctx, reason = load.context_length, f"--ctx {load.context_length}"
        else:
            n_ctx = min(DEFAULT_CONTEXT, trained or DEFAULT_CONTEXT)
            reason = f"{n_ctx} (default; trained {trained or 'unknown'}; the KV cache grows as needed)"
        size = sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))
        self.info = ModelInfo(
            name=name or self.folder.name,
            backend=self.backend_name,
            context_length=n_ctx,
            trained_context=trained,
            family=self.family,
            architecture=model_type or None,
            path=self.folder,
            parameters=self._parameters,
            quantization=str(quant).lower() if quant else str(self.dtype).removeprefix("torch."),
            size_bytes=size,
            supports_thinking=self.template.supports_thinking,
            supports_tools=self.template.supports_tools,
            load_seconds=time.perf_counter() - started,
            threads=self._threads if self.device == "cpu" else None,
            context_reason=f"{reason} · {self.device} {str(self.dtype).removeprefix('torch.')}",
        )

    # -- loading ---------------------------------------------------------------------------

    def _load_on_engine(self, load: LoadOptions) -> None:
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # check_folder has vetted both: pickles only when there are no safetensors and the user allowed them.
        safetensors = any(self.folder.glob("*.safetensors")) or not load.allow_pickle
        remote_code = load.trust_remote_code
        if not load.verbose:
            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
        if self.device == "cpu":
            torch.set_num_threads(self._threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True,
                                                           trust_remote_code=remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.folder,
                dtype=self.dtype,
                device_map=self.device if self.device != "cpu" else None,
                use_safetensors=safetensors,
                trust_remote_code=remote_code,
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InvalidModelFile(f"transformers could not load {self.folder.name}: {str(exc).splitlines()[0]}",
                                   "qwen doctor shows the torch and transformers versions") from None
        if self.device == "cpu":
            self.model.to("cpu")
        self.model.eval()
        self._parameters = sum(p.numel() for p in self.model.parameters())
        self._logits_size = self.model.get_output_embeddings().weight.shape[0]  # ≥ the tokenizer's
        # transformers 5 renamed forward's `past_key_values` to `cache`.
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def _tokenizer_config(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _end_of_turn_tokens(self, config: dict[str, Any]) -> frozenset[int]:
        ids = _token_ids(config.get("eos_token_id"))
        try:
            ids |= _token_ids(json.loads((self.folder / "generation_config.json").read_text()).get("eos_token_id"))
        except (OSError, ValueError, AttributeError):
            pass
        vocab = self.tokenizer.get_vocab()
        ids |= {vocab[text] for text in END_OF_TURN_TEXTS if text in vocab}
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(ids)

    def ensure_context(self, needed: int) -> bool:
        """The KV cache grows as it goes: raising the limit only needs room in the trained length."""
        if needed <= self.info.context_length:
            return True
        if self._context_fixed or needed > (self._trained or DEFAULT_CONTEXT):
            return False
        target = min(self._trained or needed, -(-needed // 1024) * 1024)
        self.info = dataclasses.replace(
            self.info, context_length=target, context_reason=f"{target} (raised for a long prompt; trained {self._trained})")
        return True

    # -- prompts ---------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], options: GenerationOptions,
               tools: Sequence[dict] | None = None) -> str:
        return chat_prompt(self.template, messages, options, tools)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def count_prompt_tokens(self, messages: Sequence[Message], options: GenerationOptions, *,
                            tools: Sequence[dict] | None = None) -> int:
        return len(self.tokenize(self.render(messages, options, tools)))

    # -- generation ------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], options: GenerationOptions, *,
             tools: Sequence[dict] | None = None) -> ChunkStream:
        prompt = self.render(messages, options, tools)
        return self._stream(prompt, options, reply_mode(self.template, prompt, options))

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream:
        return self._stream(prompt, options, "text")

    def _options(self, options: GenerationOptions) -> GenerationOptions:
        if not (self.family == "qwen3" and options.think is False):  # the repo's values are for thinking
            options = options.merged_over(self._generation_defaults)
        return sampling.resolve(options, self.family)

    def _stream(self, prompt: str, options: GenerationOptions, mode) -> ChunkStream:
        options = self._options(options)
        ids = self.tokenize(prompt)
        return self._engine.stream(lambda cancel: self._generate(ids, options, mode, cancel))

    def _generate(self, ids: list[int], options: GenerationOptions, mode, cancel: threading.Event) -> Iterator[Chunk]:
        started = time.perf_counter()
        n_prompt = len(ids)
        n_ctx = self.info.context_length
        if n_prompt >= n_ctx:
            raise ContextOverflow(f"the prompt is {n_prompt} tokens but the context holds {n_ctx}",
                                  "shorten the input or raise the context with --ctx")
        if n_prompt == 0:
            raise UsageError("the prompt is empty")
        budget = n_ctx - n_prompt
        if options.max_tokens is not None:
            budget = min(budget, options.max_tokens)
        sampler = Sampler(options, self.device)
        constraint = self._grammars.constraint(options)
        pipeline = TextPipeline(mode, options.stop)
        model, device = self.model, self.device
        recent = list(ids[-PENALTY_WINDOW:]) if sampler.penalised else []
        cached = self._reuse_cache(ids)
        cache, cache_arg = self._cache, self._cache_arg
        fed = self._cached_ids  # what the cache holds, kept exact as tokens go in

        def tokens() -> Iterator[int]:
            # One forward per token; when the consumer stops pulling, no forward runs for nothing.
            step = torch.tensor([ids[cached:]], device=device)
            logits = model(input_ids=step, **{cache_arg: cache}, use_cache=True, logits_to_keep=1).logits
            fed.extend(ids[cached:])
            while True:
                row = logits[0, -1] if constraint is None else constraint.mask(logits[0, -1])
                token = sampler(row, recent)
                if constraint is not None and token not in end_tokens:
                    constraint.accept(token)
                yield token
                if sampler.penalised:
                    recent.append(token)
                step = torch.tensor([[token]], device=device)
                logits = model(input_ids=step, **{cache_arg: cache}, use_cache=True).logits
                fed.append(token)

        end_tokens = self._end_tokens
        try:
            with torch.inference_mode():
                yield from token_chunks(tokens(), pipeline, piece=self._piece, is_end=end_tokens.__contains__,
                                        cancel=cancel, budget=budget, started=started, n_prompt=n_prompt,
                                        cached=cached)
        except BaseException:
            self._cache, self._cached_ids = None, []  # a half-updated cache must not be reused
            raise

    def _reuse_cache(self, ids: list[int]) -> int:
        """Keep the KV cache of the longest common prefix with the last request; returns its length.
        At least one prompt token is always evaluated again, for the logits of the next token."""
        from transformers import DynamicCache

        cached = min(common_prefix(self._cached_ids, ids), len(ids) - 1)
        if self._cache is not None and cached > 0:
            drop = len(self._cached_ids) - cached
            if drop and not getattr(self._cache, "is_croppable", True):
                cached = 0  # e.g. sliding-window or linear-attention layers: start over
            else:
                if drop:
                    self._cache.crop(-drop)  # negative: remove that many (transformers 4.x and 5.x)
                    del self._cached_ids[cached:]
                return cached
        self._cache = DynamicCache(config=self.model.config)
        self._cached_ids = []
        return 0

    def _piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._token_bytes(token)
        return cached

    def _token_bytes(self, token: int) -> bytes:
        if token in self._special:
            return b""  # control tokens print nothing, as in llama.cpp
        text = self.tokenizer.convert_ids_to_tokens(token)
        if text is None:
            return b""
        added = self.tokenizer.added_tokens_decoder.get(token)
        if added is not None:
            return added.content.encode("utf-8")
        if self._byte_level:
            table = _byte_decoder()
            if all(c in table for c in text):
                return bytes(table[c] for c in text)
        return self.tokenizer.decode([token]).encode("utf-8")

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
