"""Model names → something a backend can load. The one seam between `run`/`serve` and the store.

Today: a local `.gguf` path (a single file or the first shard of a set). The catalog, the hub and
hosted models plug in here without `run` knowing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ModelNotFound

Format = Literal["gguf", "safetensors", "remote"]


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # as the user wrote it
    format: Format
    path: Path | None = None
    repo: str | None = None
    #: Facts the catalog knows before the file is opened (family, sampling, context).
    hints: dict = field(default_factory=dict)


def looks_like_path(name: str) -> bool:
    return name.endswith(".gguf") or name.startswith(("/", "./", "../", "~")) or Path(name).exists()


def resolve(name: str) -> ResolvedModel:
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise ModelNotFound(f"no such file: {name}", "give a path to a .gguf file")
        return ResolvedModel(name=name, format="gguf", path=path)
    raise ModelNotFound(f"unknown model {name!r}", "give a path to a .gguf file")
