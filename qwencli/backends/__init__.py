"""Backends: engines behind one protocol (`base.Backend`). Heavy libraries load only in here."""

from __future__ import annotations

from typing import Any

from ..errors import NotAChatModel, UnsupportedModel
from ..resolved import TRANSFORMERS_FORMATS, ResolvedModel
from .base import Backend, LoadOptions, ModelInfo

__all__ = ["Backend", "LoadOptions", "ModelInfo", "load_backend", "refuse_unless_chat", "task_of"]

CHAT, EMBEDDING, RERANK = "chat", "embedding", "rerank"  # as models.catalog.TASKS
_RANK_POOLING = 4  # LLAMA_POOLING_TYPE_RANK


def task_of(model: ResolvedModel, gguf: Any = None) -> str:
    """chat, embedding or rerank. The catalog's word for an embedding or rerank model wins;
    otherwise a GGUF says it by declaring a pooling type (chat models declare none). `gguf` is
    the file's `formats.gguf.GGUFModel` when the caller has read it already."""
    hinted = model.hints.get("task")
    if hinted in (EMBEDDING, RERANK):
        return str(hinted)
    if model.format != "gguf" or model.path is None:
        return CHAT
    if gguf is None:
        from ..formats.gguf import read_model

        gguf = read_model(model.path)
    pooling = gguf.pooling_type
    return RERANK if pooling == _RANK_POOLING else EMBEDDING if pooling else CHAT


def refuse_unless_chat(model: ResolvedModel, gguf: Any = None) -> None:
    task = task_of(model, gguf)
    if task != CHAT:
        raise NotAChatModel.of(model.name, task)


def load_backend(model: ResolvedModel, load: LoadOptions = LoadOptions()) -> Backend:
    """Load `model` with the backend its format calls for (a chat load: an embedding or rerank
    model is refused here, before llama.cpp opens it)."""
    if model.format == "gguf" and model.path is not None:
        refuse_unless_chat(model)
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
