"""Backends: engines behind one protocol (`base.Backend`). Heavy libraries load only in here."""

from __future__ import annotations

from ..errors import UnsupportedModel
from ..resolved import TRANSFORMERS_FORMATS, ResolvedModel
from .base import Backend, LoadOptions, ModelInfo

__all__ = ["Backend", "LoadOptions", "ModelInfo", "load_backend"]


def load_backend(model: ResolvedModel, load: LoadOptions = LoadOptions()) -> Backend:
    """Load `model` with the backend its format calls for."""
    if model.format == "gguf" and model.path is not None:
        from .llamacpp import LlamaCppBackend

        return LlamaCppBackend(model.path, load, name=model.name, projector=model.projector)
    if model.format in TRANSFORMERS_FORMATS and model.path is not None:
        from ..hardware import require_torch

        require_torch()
        from .torch_backend import TorchBackend

        return TorchBackend(model.path, load, name=model.name)
    if model.format == "remote":
        from .remote import RemoteBackend

        return RemoteBackend(model, load)
    raise UnsupportedModel(f"no backend can run {model.name} ({model.format})")
