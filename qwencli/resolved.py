"""What `models.resolve()` hands a backend: the values that cross from `models/` to `backends/`.

A leaf: it imports nothing of qwencli, so both sides (and the server) can name these types
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: How a model is stored, which decides its backend: a GGUF file (llama.cpp), a transformers
#: folder with safetensors or, pulled with --allow-pickle, only pickle weights (torch), or a server.
Format = Literal["gguf", "safetensors", "pickle", "remote"]
GGUF: Format = "gguf"
SAFETENSORS: Format = "safetensors"
PICKLE: Format = "pickle"
REMOTE: Format = "remote"
#: The formats the torch backend loads.
TRANSFORMERS_FORMATS: tuple[Format, ...] = (SAFETENSORS, PICKLE)

#: The variable a `--host` server's key comes from when --api-key is not given.
HOST_KEY = "QWEN_API_KEY"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach a remote model. The key is never part of a repr or a message."""

    base_url: str  # up to and including /v1 (or /compatible-mode/v1)
    model: str  # the id sent in requests
    provider: Literal["dashscope", "openai"]
    api_key: str | None = field(default=None, repr=False)
    key_source: str = HOST_KEY  # the variable (or flag) a user fixes when the key is refused


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # as the user wrote it
    format: Format
    path: Path | None = None
    repo: str | None = None
    #: Facts the catalog knows before the file is opened (family, sampling, context).
    hints: dict = field(default_factory=dict)
    #: Where a remote model is served (format "remote"); holds the API key, so never printed.
    endpoint: Endpoint | None = field(default=None, repr=False)
    #: Why this backend was chosen (shown by --verbose and `qwen show`).
    reason: str = ""
    #: The vision projector (mmproj GGUF) that goes with a GGUF model: --mmproj, or one beside it.
    projector: Path | None = None
