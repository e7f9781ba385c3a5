"""The backend protocol: what the CLI, the REPL and the server need from an engine.

Stream first: `chat()` and `complete()` return an iterator of `Chunk`s, the last one carrying
finish reason, usage and timings; the non-streaming answer is `qwencli.chat.collect()` of it.
Closing the iterator early (Ctrl-C, a closed pipe, a client that went away) stops generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from ..chat import Chunk, GenerationOptions, Message


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
    supports_tools: bool = False
    load_seconds: float = 0.0
    threads: int | None = None
    gpu_layers: int | None = None
    #: Why the context length is what it is (shown by --verbose and `/show`).
    context_reason: str = ""

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
        }
        return {k: v for k, v in out.items() if v is not None}


class Backend(Protocol):
    info: ModelInfo

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
    ) -> Iterator[Chunk]: ...

    def complete(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]: ...

    def close(self) -> None: ...
