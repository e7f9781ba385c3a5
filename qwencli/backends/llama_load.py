"""Loading a GGUF file into llama.cpp, as both llama.cpp backends do: the context it gets, the
layers that go to the GPU, a quiet load whose failures are explained, the model, context and
batch handles (`load_handles`), and what the load reports.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import io
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from .. import sampling
from ..errors import InvalidModelFile, UnsupportedModel
from ..formats.gguf import GGUFModel
from ..hardware import available_memory
from ..templates import ChatTemplate
from . import llama_lib
from .base import LoadOptions, ModelInfo
from .local import DEFAULT_CONTEXT, KV_SHARE_CHOSEN, MIN_CONTEXT

BACKEND_NAME = "llama.cpp"

llama_lib.binding_only()  # before any `import llama_cpp` here or in the backends that load through us


class _LlamaLog:
    """llama.cpp's log, kept off the terminal unless --verbose; the last lines explain load errors."""

    def __init__(self) -> None:
        self.verbose = False
        self.lines: collections.deque[str] = collections.deque(maxlen=50)
        self._partial = ""
        self._callback: Any = None

    def install(self) -> None:
        """Make our callback llama.cpp's log (created once, and kept alive: llama.cpp may be
        calling it from another thread when it is set again)."""
        import llama_cpp

        if self._callback is None:

            @llama_cpp.llama_log_callback
            def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
                message = text.decode("utf-8", errors="replace")
                if self.verbose:
                    sys.stderr.write(message)
                self._partial += message
                *done, self._partial = self._partial.split("\n")
                self.lines.extend(line for line in done if line.strip())

            self._callback = on_log
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def last_error(self) -> str | None:
        for line in reversed(self.lines):
            if "error" in line.lower() or "failed" in line.lower():
                return line.strip()
        return None


_LOG = _LlamaLog()
_LOG_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_load(model: GGUFModel, verbose: bool) -> Iterator[None]:
    """Around a load (on the engine thread): llama.cpp's log through our callback, and a failure
    raised as InvalidModelFile with the log line that explains it.

    Load with llama-cpp-python's verbose=True: verbose=False dup2-s fds 1 and 2 to /dev/null,
    which is process-wide and races with other threads; its own prints are caught here instead.
    """
    with _LOG_LOCK:
        # Set again on every load: llama-cpp-python's own `__init__` (run when something first
        # uses `Llama`, see llama_lib.py) sets its logger in place of ours.
        _LOG.install()
        _LOG.verbose = verbose
        _LOG.lines.clear()  # what explains a failure is this load's log
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        yield
    except Exception as exc:
        detail = _LOG.last_error() or str(exc)
        if any("unknown model architecture" in line for line in _LOG.lines):  # the linked llama.cpp decides
            raise UnsupportedModel(
                f"{model.path.name}: architecture {model.architecture!r} is not supported by this llama.cpp",
                "upgrade llama-cpp-python, or use a model of a supported architecture",
            ) from None
        raise InvalidModelFile(
            f"llama.cpp could not load {model.path.name}: {detail}",
            "the file may be damaged or need a newer llama-cpp-python (qwen doctor)",
        ) from None
    finally:
        sys.stderr = saved


def route_mtmd_log(verbose: bool) -> None:
    """mtmd (the vision side) logs through its own callbacks: send them where llama.cpp's go, so
    a run is quiet unless --verbose and a refused projector's reason is `last_log_error()`."""
    import ctypes

    import llama_cpp.mtmd_cpp as mtmd

    with _LOG_LOCK:
        if _LOG._callback is None:
            _LOG.install()
        _LOG.verbose = verbose
        _LOG.lines.clear()
    mtmd.mtmd_log_set(_LOG._callback, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(_LOG._callback, ctypes.c_void_p(0))


def last_log_error() -> str | None:
    return _LOG.last_error()


def gpu_layers(load: LoadOptions) -> int:
    """Layers to offload: as the user says, else all of them (-1) when llama.cpp can offload."""
    import llama_cpp

    if load.gpu_layers is not None:
        return load.gpu_layers
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


class Handles:
    """The llama.cpp objects of one load: the model, its context (one or more sequences), a batch."""

    def __init__(self, model: Any, ctx: Any, batch: Any):
        self.model, self.ctx, self.batch = model, ctx, batch

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()


#: `--flash-attn` values → llama.cpp's `llama_flash_attn_type` (AUTO -1, DISABLED 0, ENABLED 1).
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}


def load_handles(
    model: GGUFModel,
    load: LoadOptions,
    *,
    n_ctx: int,
    n_batch: int,
    threads: int,
    gpu_layers: int,
    n_seq: int = 1,
    n_ubatch: int | None = None,
    flash_attn: str = "off",
) -> Handles:
    """Model, context of `n_ctx` tokens (for `n_seq` sequences, each its own cache) and a batch of
    `n_batch` tokens, with the context settings `llama_cpp.Llama` would use. `n_ubatch` (default
    `n_batch`) and `flash_attn` ("off", "on", "auto") are for the measuring commands, which copy
    llama.cpp's own tools."""
    import llama_cpp

    model_params = llama_cpp.llama_model_default_params()
    model_params.n_gpu_layers = 0x7FFFFFFF if gpu_layers == -1 else gpu_layers
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx = n_ctx
    ctx_params.n_batch = n_batch
    ctx_params.n_ubatch = n_ubatch or n_batch
    ctx_params.n_seq_max = n_seq
    ctx_params.kv_unified = False  # one cache per sequence: attention reads only its own
    ctx_params.n_threads = ctx_params.n_threads_batch = threads
    ctx_params.no_perf = True
    # Off for replies: llama.cpp's default "auto" turns flash attention on, whose different rounding
    # makes greedy replies differ from what `llama_cpp.Llama` (and our tests' expected answers) gives.
    ctx_params.flash_attn_type = FLASH_ATTN[flash_attn]
    with quiet_load(model, load.verbose):
        handle = llama_lib.Model(str(model.path), model_params)
        ctx = llama_lib.Context(handle, ctx_params)
        batch = llama_lib.Batch(n_batch)
    return Handles(handle, ctx, batch)


def _kv_fits(model: GGUFModel, free_memory: int) -> int:
    """Tokens of KV cache our share of the free memory (after the weights) holds."""
    per_token = max(model.kv_bytes_per_token(), 1)
    return int(max(free_memory - model.size, 0) * KV_SHARE_CHOSEN // per_token)


def choose_context_length(model: GGUFModel, requested: int | None, free_memory: int) -> tuple[int, str]:
    """The context to allocate and why. Never llama-cpp-python's 512 default."""
    trained = model.context_length
    if requested:
        if trained and requested > trained:
            return requested, f"--ctx {requested} (above the trained {trained}; quality may drop)"
        return requested, f"--ctx {requested}"
    candidates = {"default": DEFAULT_CONTEXT, "free memory": _kv_fits(model, free_memory)}
    if trained:
        candidates["trained length"] = trained
    reason, n_ctx = min(candidates.items(), key=lambda kv: kv[1])
    n_ctx = max(MIN_CONTEXT, n_ctx // 256 * 256 if n_ctx >= 256 else n_ctx)
    return n_ctx, f"{n_ctx} ({reason}; trained {trained or 'unknown'})"


def raised_context(model: GGUFModel, needed: int) -> int | None:
    """A context of at least `needed` tokens (rounded up to 1024) that the trained length and the
    free memory allow, or None."""
    trained = model.context_length or DEFAULT_CONTEXT
    target = min(trained, _kv_fits(model, available_memory()), -(-needed // 1024) * 1024)
    return target if target >= needed else None


def model_info(
    model: GGUFModel,
    template: ChatTemplate,
    *,
    name: str | None,
    n_ctx: int,
    reason: str,
    started: float,
    threads: int,
    gpu_layers: int,
) -> ModelInfo:
    return ModelInfo(
        name=name or model.path.name,
        backend=BACKEND_NAME,
        context_length=n_ctx,
        trained_context=model.context_length,
        family=sampling.family_of(model.architecture, model.name),
        architecture=model.architecture,
        path=model.path,
        parameters=model.parameter_count,
        quantization=model.quantization,
        size_bytes=model.size,
        supports_thinking=template.supports_thinking,
        thinking=template.thinking_control,
        supports_tools=template.supports_tools,
        tool_dialect=template.tool_dialect,
        load_seconds=time.perf_counter() - started,
        threads=threads,
        gpu_layers=gpu_layers,
        context_reason=reason,
    )
