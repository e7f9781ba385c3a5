"""The two workloads `llama-bench` times (tools/llama-bench/llama-bench.cpp), over llama.cpp's C API:
reading a prompt of random tokens `n_batch` at a time with logits for the last one only
(`test_prompt`), and decoding single random tokens, each waited for (`test_gen`). Random tokens,
because the speed of a decode does not depend on which tokens it reads.
"""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

from ..errors import InvalidModelFile
from .base import LoadOptions


class LlamaBenchContext:
    """A GGUF model and one context of `n_ctx` tokens for timing prompt reads and generation."""

    def __init__(
        self, path: Path, *, n_ctx: int, batch: int, ubatch: int, threads: int, flash_attn: str, verbose: bool = False
    ):
        import llama_cpp

        from ..formats.gguf import read_model
        from .llama_load import gpu_layers, load_handles

        load = LoadOptions(threads=threads, verbose=verbose)
        self._batch_size = batch
        self._handles = load_handles(
            read_model(path),
            load,
            n_ctx=n_ctx,
            n_batch=batch,
            threads=threads,
            gpu_layers=gpu_layers(load),
            n_ubatch=min(ubatch, batch),
            flash_attn=flash_attn,
        )
        self._lib = llama_cpp
        self._handles.batch.one_sequence()
        model = self._handles.model.model
        text = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(model, text, len(text))
        #: What llama-bench's table says of the model: "llama 256M Q4_1", tensor bytes, parameters.
        self.description = text.value.decode("utf-8", errors="replace")
        self.size = int(llama_cpp.llama_model_size(model))
        self.n_params = int(llama_cpp.llama_model_n_params(model))
        vocab = llama_cpp.llama_model_get_vocab(self._handles.model.model)
        self._vocab_size = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self._bos = int(llama_cpp.llama_vocab_bos(vocab)) if llama_cpp.llama_vocab_get_add_bos(vocab) else None
        self._memory = llama_cpp.llama_get_memory(self._handles.ctx.ctx)
        self._random = random.Random(0)
        self._pos = 0

    def clear(self) -> None:
        self._lib.llama_memory_clear(self._memory, False)
        self._pos = 0

    def _token(self, first: bool) -> int:
        return self._bos if first and self._bos is not None else self._random.randrange(self._vocab_size)

    def _decode(self, tokens: list[int]) -> None:
        batch = self._handles.batch.batch
        self._handles.batch.write_run(tokens, self._pos, logits=False)  # as llama-bench: C speed, not Python's
        batch.logits[len(tokens) - 1] = True
        batch.n_tokens = len(tokens)
        status = self._lib.llama_decode(self._handles.ctx.ctx, batch)
        if status != 0:
            raise InvalidModelFile(f"llama.cpp failed while benchmarking (llama_decode returned {status})")
        self._pos += len(tokens)

    def prompt(self, n: int) -> None:
        """Read `n` tokens after what the cache holds, a batch at a time (`test_prompt`)."""
        done = 0
        while done < n:
            size = min(n - done, self._batch_size)
            self._decode([self._token(first=done == 0 and self._pos == 0) for _ in range(size)])
            done += size
        self._lib.llama_synchronize(self._handles.ctx.ctx)

    def generate(self, n: int) -> None:
        """Decode `n` single tokens, waiting for each as a reply would (`test_gen`)."""
        token = self._token(first=True)
        for _ in range(n):
            self._decode([token])
            self._lib.llama_synchronize(self._handles.ctx.ctx)
            token = self._token(first=False)

    def close(self) -> None:
        self._handles.close()
