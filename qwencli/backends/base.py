"""The engine contract: everything the CLI, the REPL and the server may rely on from a backend.

Stream first: `chat()` and `complete()` return a `ChunkStream`, an iterator of `Chunk`s; the
non-streaming answer is `qwencli.chat.collect()` of it. What every backend guarantees:

- the last chunk, and only it, has `finish_reason`, `usage` and `timings` ("cancelled" when the
  caller stopped it); an error ends the stream by raising instead;
- `cancel()` (any thread) stops generation between two tokens (a remote stream: two chunks);
  `close()` stops it too and returns once the engine has let go, so the next request finds it free;
- every call into a native engine runs on that model's one engine thread (`engine_thread`), so
  callers on any thread never race inside the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..chat import Chunk, GenerationOptions, Message, ToolDialect
from ..thinking import ThinkingControl


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. None means "choose for this machine"."""

    context_length: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None
    verbose: bool = False
    #: torch only: "cuda", "cuda:1", "cpu"… (None: the best there is).
    device: str | None = None
    #: torch only, both off unless the user says so: run a folder's own Python code (auto_map);
    #: load pickle weights (*.bin) when there are no safetensors.
    trust_remote_code: bool = False
    allow_pickle: bool = False
    #: The image-token budget per image (mtmd's image_min_tokens / image_max_tokens): an image
    #: is resized to cost between these. None: the projector's own (8 to 4096 for Qwen-VL).
    image_min_tokens: int | None = None
    image_max_tokens: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str
    context_length: int  # the context this load can hold
    trained_context: int | None = None
    family: str | None = None
    architecture: str | None = None
    path: Path | None = None
    parameters: int | None = None
    quantization: str | None = None
    size_bytes: int | None = None
    supports_thinking: bool = False
    #: "switch", "always" or "never" (qwencli.thinking.ThinkingControl): what --think can change.
    thinking: ThinkingControl = "switch"
    supports_tools: bool = False
    #: How the model writes tool calls (`ChatTemplate.tool_dialect`).
    tool_dialect: ToolDialect = "hermes"
    load_seconds: float = 0.0
    threads: int | None = None
    gpu_layers: int | None = None
    #: Why the context length is what it is (shown by --verbose and `/show`).
    context_reason: str = ""
    #: The vision projector (mmproj GGUF) loaded with the model: it takes images.
    projector: Path | None = None
    #: torch: the folder's own vision tower is loaded (a Qwen-VL folder): it takes images.
    vision_tower: bool = False

    @property
    def takes_images(self) -> bool:
        return self.projector is not None or self.vision_tower

    def describe(self) -> dict[str, Any]:
        out = {
            "model": self.name,
            "backend": self.backend,
            "architecture": self.architecture,
            "parameters": self.parameters,
            "quantization": self.quantization,
            "context": self.context_length,
            "trained context": self.trained_context,
            "threads": self.threads,
            "gpu layers": self.gpu_layers,
            "path": str(self.path) if self.path else None,
            "projector": str(self.projector) if self.projector else None,
            "vision": "the model's own vision tower" if self.vision_tower else None,
        }
        return {k: v for k, v in out.items() if v is not None}


class ChunkStream(Protocol):
    """One reply's chunks, consumed once: iterated, or pushed with `push_to`."""

    def __iter__(self) -> Iterator[Chunk]: ...

    def __next__(self) -> Chunk: ...

    def close(self) -> None:
        """Stop generating (if still running) and wait until the engine is free."""
        ...

    def cancel(self) -> None:
        """Ask generation to stop at the next token (from any thread); does not wait."""
        ...

    def push_to(self, on_item: Callable[[Chunk], None], on_end: Callable[[BaseException | None], None]) -> None:
        """Deliver the chunks to `on_item`, then call `on_end(error or None)` once generation has
        stopped; instead of iterating. A local engine calls them from its engine thread and
        returns at once (one thread hop less per token for the server); any other stream runs
        them on the calling thread before returning. `cancel()` still applies."""
        ...


def pull_into(
    stream: ChunkStream, on_item: Callable[[Chunk], None], on_end: Callable[[BaseException | None], None]
) -> None:
    """`push_to` for a stream that is pulled: iterate on this thread, close, then `on_end`."""
    error: BaseException | None = None
    try:
        for chunk in stream:
            on_item(chunk)
    except BaseException as exc:  # handed to on_end, as an engine thread would hand it
        error = exc
    finally:
        try:
            stream.close()
        except BaseException as exc:
            error = error or exc
    on_end(error)


class PulledStream:
    """A `ChunkStream` over chunks pulled on the consumer's thread (a remote server, a fake):
    `cancel()` ends it before its next chunk; `close()` closes a generator, running its `finally`."""

    def __init__(self, chunks: Iterator[Chunk]):
        self._chunks = chunks
        self._cancelled = threading.Event()

    def __iter__(self) -> PulledStream:
        return self

    def __next__(self) -> Chunk:
        if self._cancelled.is_set():
            self.close()
            raise StopIteration
        return next(self._chunks)

    def close(self) -> None:
        if isinstance(self._chunks, Generator):
            self._chunks.close()

    def cancel(self) -> None:
        self._cancelled.set()

    def push_to(self, on_item: Callable[[Chunk], None], on_end: Callable[[BaseException | None], None]) -> None:
        pull_into(self, on_item, on_end)


class Evaluating(Protocol):
    """What the llama.cpp backends add for evaluation clients (lm-eval-harness through `qwen
    serve`): a completion prompt given as token ids, and the model's own tokenizer. The server
    checks `info.backend` before it relies on this."""

    def complete(self, prompt: str | Sequence[int], options: GenerationOptions) -> ChunkStream: ...

    def tokenize_text(self, text: str, *, add_special: bool) -> list[int]:
        """Special-token text maps to its id; BOS only with `add_special` (and a model that has one)."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def token_pieces(self, tokens: Sequence[int]) -> list[bytes]: ...

    def tokenizer_info(self) -> dict[str, Any]:
        """The special tokens' texts and the chat template, as vLLM's `/tokenizer_info` names them."""
        ...


class Backend(Protocol):
    """A loaded model. Backends subclass this for the defaults of `slots` and `ensure_context`."""

    info: ModelInfo
    #: Requests the backend generates at once (`qwen serve --parallel`); the server's KV
    #: estimates multiply by it.
    slots: int = 1

    def ensure_context(self, needed: int) -> bool:
        """Make room for `needed` tokens if the backend can (raising its context); True if it
        holds them. By default the context is what it is."""
        return needed <= self.info.context_length

    def count_prompt_tokens(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> int | None:
        """Tokens the rendered prompt takes, or None when the backend cannot tell (remote)."""
        ...

    def chat(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> ChunkStream: ...

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream: ...

    def close(self) -> None:
        """Free the model; streams still running end with an error."""
        ...
