"""A GGUF model loaded for embeddings: llama.cpp's embedding context, apart from any chat load of
the same file (the server keys the two loads apart).

Pooling is the model's own (`<arch>.pooling_type`: last-token for Qwen3-Embedding); a model that
declares none is mean-pooled as llama-server pools it, unless the catalog knows it as an embedding
model (then last-token). A rank-pooled file is a reranker: it scores (`rerank`, llama_rerank.py)
and gives no vectors. Vectors come back
L2-normalised, so a dot product is the cosine.

Every native call runs on the process's llama.cpp engine thread (`step_engine.llama_engine`), one
text or document per call: a chat reply streaming meanwhile gives a token between two of them,
and the chat load keeps its speed (a second thread's OpenMP team would slow it for good).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..chat import GenerationOptions, Message
from ..errors import QwenError
from .base import Backend, ChunkStream, LoadOptions, ModelInfo
from .llama_rerank import RERANK_TEMPLATE_KEY, CannotRerank, Stopped, score
from .step_engine import llama_engine

#: Tokens one input may take; longer inputs are a 400 (never silently cut).
EMBED_CONTEXT = 2048
_POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


class NotForChat(QwenError):
    http_status = 400
    error_type = "invalid_request_error"


def pooling_of(metadata: dict[str, Any], arch: str, *, last_token_default: bool = False) -> int:
    """llama.cpp's pooling type: the file's own, or (when it declares none) last-token for a
    model known to be a decoder-only embedder, else mean."""
    import llama_cpp

    value = metadata.get(f"{arch}.pooling_type")
    if isinstance(value, int) and value > 0:
        return value
    if last_token_default:
        return int(llama_cpp.LLAMA_POOLING_TYPE_LAST)
    return int(llama_cpp.LLAMA_POOLING_TYPE_MEAN)


def normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)


class TooManyDimensions(QwenError):
    http_status = 400
    error_type = "invalid_request_error"


def shorten(vector: list[float], dimensions: int | None) -> list[float]:
    """The first `dimensions` values, normalised again: how Matryoshka models (Qwen3-Embedding)
    give shorter vectors."""
    if dimensions is None or dimensions == len(vector):
        return vector
    if dimensions > len(vector):
        raise TooManyDimensions(f"dimensions: this model's vectors have {len(vector)}", param="dimensions")
    return normalise(vector[:dimensions])


class LlamaEmbedBackend(Backend):
    def __init__(self, path: Path, load: LoadOptions, *, name: str | None = None, last_token_default: bool = False):
        import llama_cpp

        from ..formats.gguf import read_model
        from ..hardware import physical_cores
        from .llama_load import gpu_layers, quiet_load

        started = time.perf_counter()
        model = read_model(path)
        threads = load.threads or physical_cores()
        n_ctx = min(load.context_length or EMBED_CONTEXT, model.context_length or EMBED_CONTEXT)
        Llama = llama_cpp.Llama  # the high-level layer's import sets its logger: before quiet_load sets ours
        pooling = pooling_of(model.metadata, model.architecture, last_token_default=last_token_default)

        def open_llama() -> Any:
            with quiet_load(model, load.verbose):
                return Llama(
                    model_path=str(path),
                    embedding=True,
                    pooling_type=pooling,
                    n_ctx=n_ctx,
                    n_batch=n_ctx,
                    n_ubatch=n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=gpu_layers(load),
                    verbose=True,  # see quiet_load
                )

        self._engine = llama_engine()
        self._llama = self._engine.call_between(open_llama)
        self._llama.verbose = load.verbose
        self.ranks = self._llama.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_RANK
        template = model.metadata.get(RERANK_TEMPLATE_KEY)
        self._rerank_template = template if isinstance(template, str) else None
        self.dimensions = int(self._llama.n_embd())
        self.info = ModelInfo(
            name=name or path.stem,
            backend="llama.cpp (embeddings)",
            context_length=n_ctx,
            trained_context=model.context_length,
            family=model.architecture,
            architecture=model.architecture,
            path=path,
            parameters=model.parameter_count,
            quantization=model.quantization,
            size_bytes=model.size,
            load_seconds=time.perf_counter() - started,
            threads=threads,
        )

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode(), add_bos=True, special=False))

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Normalised vectors for `texts`, and the tokens they took."""
        if self.ranks:  # a rank-pooled load yields one score per input, not a vector
            raise NotForChat(f"{self.info.name} is a reranker: use /v1/rerank, not embeddings", param="model")
        out: list[list[float]] = []
        tokens = 0
        for i, text in enumerate(texts):
            vector, n = self._engine.call_between(self._embed_one, i, text)
            tokens += n
            out.append(normalise(vector))
        return out, tokens

    def _embed_one(self, i: int, text: str) -> tuple[list[float], int]:
        """One input's vector and tokens, on the engine thread."""
        n = self.count_tokens(text)
        if n == 0:  # llama.cpp aborts the process on an empty batch
            raise NotForChat(f"input[{i}] is empty: no tokens to embed", param="input")
        if n > self.info.context_length:
            raise NotForChat(f"input[{i}] takes {n} tokens; this embedding load holds {self.info.context_length}")
        return self._llama.embed(text, normalize=False), n

    def rerank(
        self, query: str, documents: Sequence[str], cancelled: Callable[[], bool] = lambda: False
    ) -> tuple[list[float], int]:
        """A relevance score in [0, 1] for each document (input order), and the tokens read."""
        if not self.ranks:
            raise CannotRerank(
                f"{self.info.name} cannot rerank: its GGUF declares no rank pooling (it is not a "
                "reranker such as Qwen3-Reranker)",
                param="model",
            )
        if self._rerank_template is None:
            raise CannotRerank(f"{self.info.name} has no rerank prompt ({RERANK_TEMPLATE_KEY}) in its GGUF")
        out: list[float] = []
        tokens = 0
        for i, document in enumerate(documents):
            if cancelled():
                raise Stopped()
            value, n = self._engine.call_between(
                score, self._llama, self._rerank_template, query, document, i, context_length=self.info.context_length
            )
            out.append(value)
            tokens += n
        return out, tokens

    # A load for embeddings does not chat.
    def count_prompt_tokens(
        self, messages: Sequence[Message], options: GenerationOptions, *, tools: Any = None
    ) -> int | None:
        return None

    def chat(self, messages: Sequence[Message], options: GenerationOptions, *, tools: Any = None) -> ChunkStream:
        raise NotForChat("this load of the model is for embeddings")

    def complete(self, prompt: str, options: GenerationOptions) -> ChunkStream:
        raise NotForChat("this load of the model is for embeddings")

    def close(self) -> None:
        def free() -> None:
            llama: Any = self._llama
            self._llama = None
            if llama is not None:
                llama.close()

        self._engine.call_between(free)  # nothing of this load streams
