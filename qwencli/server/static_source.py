"""A fixed model source: names given up front, each a file or a ResolvedModel (tests, embedding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelNotFound
from ..resolved import ResolvedModel


class StaticSource:
    """Models given by name → file, e.g. the ones named on the command line (and tests' fixtures)."""

    def __init__(self, models: dict[str, Any]):
        self._models: dict[str, ResolvedModel] = {}
        for name, value in models.items():
            if isinstance(value, ResolvedModel):
                self._models[name] = value
            else:
                self._models[name] = ResolvedModel(name=name, format="gguf", path=Path(value))

    def resolve(self, name: str) -> ResolvedModel:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound(f"unknown model {name!r}") from None

    def names(self) -> list[str]:
        return list(self._models)
