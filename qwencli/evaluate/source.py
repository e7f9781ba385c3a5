"""The model a measurement reads: a name or path resolved as `qwen run` resolves it, loaded for
chunk logits on the backend its format needs (a GGUF on llama.cpp, a Hugging Face folder on torch,
which `--backend torch` picks for a catalog name that has both).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .chunks import ChunkSource


@dataclass(frozen=True)
class SourceOptions:
    ctx: int = 512
    batch: int = 2048
    threads: int | None = None
    flash_attn: str = "auto"
    quant: str | None = None
    backend: str = "auto"
    device: str | None = None
    verbose: bool = False


def open_source(model: str, options: SourceOptions) -> ChunkSource:
    from ..hardware import physical_cores
    from ..models.resolve import resolve

    resolved = resolve(model, quant=options.quant, backend=options.backend)
    threads = options.threads or physical_cores()
    if resolved.format == "gguf" and resolved.path is not None:
        from ..backends.llama_logits import LlamaChunkLogits

        return LlamaChunkLogits(
            resolved.path,
            ctx=options.ctx,
            batch=options.batch,
            threads=threads,
            flash_attn=options.flash_attn,
            verbose=options.verbose,
        )
    if resolved.format == "safetensors" and resolved.path is not None:
        from ..backends.torch_logits import TorchChunkLogits

        return TorchChunkLogits(resolved.path, ctx=options.ctx, batch=options.batch, threads=threads,
                                device=options.device)  # fmt: skip
    raise UsageError(
        f"{model} is {resolved.format}: qwen eval measures GGUF models (llama.cpp) and safetensors folders (torch)"
    )
