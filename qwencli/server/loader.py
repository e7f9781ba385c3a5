"""How the server loads a model: with `--parallel N` (N > 1) a GGUF file goes to the batched
llama.cpp backend, which generates N replies at once; everything else to the backend its format
calls for, one request at a time (the scheduler keeps the others in line).
"""

from __future__ import annotations

from collections.abc import Callable

from ..backends.base import Backend, LoadOptions
from ..resolved import ResolvedModel

#: (model, load options, parallel slots) → a loaded backend.
Loader = Callable[[ResolvedModel, LoadOptions, int], Backend]


def default_loader(model: ResolvedModel, load: LoadOptions, parallel: int) -> Backend:
    from ..backends import load_backend

    if model.hints.get("embedding") and model.path is not None:  # registry.EMBEDDING
        from ..backends.llama_embed import LlamaEmbedBackend

        # A catalog embedding model whose file declares no pooling (the first Qwen3-Embedding GGUFs)
        # pools its last token, as Qwen3-Embedding is trained to; a chat model keeps llama-server's mean.
        last = model.hints.get("task") == "embedding"
        return LlamaEmbedBackend(model.path, load, name=model.name, last_token_default=last)
    if parallel > 1 and model.format == "gguf" and model.path is not None:
        from ..backends.llamacpp_batched import BatchedLlamaCppBackend

        return BatchedLlamaCppBackend(model.path, load, name=model.name, slots=parallel, projector=model.projector)
    return load_backend(model, load)
