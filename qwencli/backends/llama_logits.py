"""llama.cpp's logits over fixed-length chunks of a token stream, as `llama-perplexity` asks for
them (tools/perplexity/perplexity.cpp): a cleared cache per chunk, the chunk's first token replaced
by BOS when the vocabulary adds one, logits only for the positions from `first` on, and as many
chunks in one `llama_decode` as the batch holds (each its own sequence and cache).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidModelFile
from .base import LoadOptions

if TYPE_CHECKING:
    import numpy as np

#: llama.cpp's default physical batch (common.h `n_ubatch`), which llama-perplexity keeps.
UBATCH = 512


class LlamaChunkLogits:
    """A GGUF model loaded for scoring chunks of `ctx` tokens, `batch` tokens per decode."""

    def __init__(self, path: Path, *, ctx: int, batch: int, threads: int, flash_attn: str, verbose: bool = False):
        import llama_cpp

        from ..formats.gguf import read_model
        from .llama_load import gpu_layers, load_handles

        load = LoadOptions(threads=threads, verbose=verbose)
        #: Chunks decoded together: llama-perplexity's n_seq (its n_parallel) = batch / ctx.
        self.n_seq = max(1, batch // ctx)
        self.ctx = ctx
        n_total = self.n_seq * ctx
        self._n_batch = min(batch, n_total)
        self._handles = load_handles(
            read_model(path),
            load,
            n_ctx=n_total,
            n_batch=self._n_batch,
            threads=threads,
            gpu_layers=gpu_layers(load),
            n_seq=self.n_seq,
            n_ubatch=min(UBATCH, self._n_batch),
            flash_attn=flash_attn,
        )
        self._lib = llama_cpp
        vocab = llama_cpp.llama_model_get_vocab(self._handles.model.model)
        self._vocab = vocab
        self.vocab_size = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(vocab))
        self._memory = llama_cpp.llama_get_memory(self._handles.ctx.ctx)

    def tokenize(self, text: bytes) -> list[int]:
        """The whole text as llama-perplexity reads it: BOS only if the vocabulary asks, special
        tokens' text left as text."""
        lib = self._lib
        capacity = len(text) + 2
        buffer = (lib.llama_token * capacity)()
        n = lib.llama_tokenize(self._vocab, text, len(text), buffer, capacity, True, False)
        if n < 0:
            raise InvalidModelFile(f"llama.cpp could not tokenize the text (llama_tokenize returned {n})")
        return list(buffer[:n])

    def chunk_logits(self, chunks: Sequence[Sequence[int]], first: int) -> Iterator[np.ndarray]:
        """For each of up to `n_seq` chunks of `ctx` tokens, decoded together: its logits for positions
        `first`…`ctx - 1`, a (ctx - first, vocab) float32 array that is valid until the next call."""
        import numpy as np

        if len(chunks) > self.n_seq or any(len(chunk) != self.ctx for chunk in chunks):
            raise ValueError(f"this load reads up to {self.n_seq} chunks of {self.ctx} tokens at a time")
        lib, ctx = self._lib, self._handles.ctx.ctx
        batch = self._handles.batch.batch
        n_ctx, n_batch, vocab = self.ctx, self._n_batch, self.vocab_size
        lib.llama_memory_clear(self._memory, True)
        rows: list[list[np.ndarray]] = [[] for _ in chunks]
        for start in range(0, n_ctx, n_batch):
            size = min(n_ctx - start, n_batch)
            n = 0
            for seq, chunk in enumerate(chunks):
                for k in range(size):
                    pos = start + k
                    batch.token[n] = self.bos if pos == 0 and self.add_bos else chunk[pos]
                    batch.pos[n] = pos
                    batch.n_seq_id[n] = 1
                    batch.seq_id[n][0] = seq
                    batch.logits[n] = pos >= first
                    n += 1
            batch.n_tokens = n
            status = lib.llama_decode(ctx, batch)
            if status != 0:
                raise InvalidModelFile(f"llama.cpp failed while scoring (llama_decode returned {status})")
            outputs = max(0, start + size - max(first, start))  # per chunk, in this decode
            if outputs == 0:
                continue
            pointer = ctypes.cast(lib.llama_get_logits(ctx), ctypes.POINTER(ctypes.c_float))
            block = np.ctypeslib.as_array(pointer, shape=(len(chunks) * outputs, vocab))
            for seq in range(len(chunks)):
                part = block[seq * outputs : (seq + 1) * outputs]
                # One decode per chunk holds the outputs until the next call; several overwrite them.
                rows[seq].append(part if n_batch >= n_ctx else part.copy())
        for parts in rows:
            yield parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        self._handles.close()
