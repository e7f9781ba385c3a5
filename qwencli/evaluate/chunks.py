"""The token stream cut as `llama-perplexity` cuts it: `n_tokens // ctx` chunks of `ctx` tokens (the
tail dropped), each read from a fresh context; only the second half is scored, because those
tokens have at least ctx/2 tokens before them. In a 512-token chunk the logits at positions
256…510 predict tokens 257…511: 255 tokens scored per chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np


class ChunkSource(Protocol):
    """What a backend gives the measurements: its vocabulary and the logits of chunks."""

    vocab_size: int
    #: Chunks decoded together (the source's batch / ctx).
    n_seq: int

    def tokenize(self, text: bytes) -> list[int]: ...

    def chunk_logits(self, chunks: Sequence[Sequence[int]], first: int) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Scored:
    """One chunk's scored part: `logits[i]` predicts `targets[i]`. The arrays are the source's and
    valid only until the next chunk is read."""

    index: int
    logits: np.ndarray  # (ctx - 1 - ctx // 2, vocab) float32
    targets: np.ndarray  # (ctx - 1 - ctx // 2,) int


def first_scored(ctx: int) -> int:
    """The first position whose logits count (llama-perplexity's `first = n_ctx / 2`)."""
    return ctx // 2


def scored_per_chunk(ctx: int) -> int:
    return ctx - 1 - first_scored(ctx)


def chunk_count(n_tokens: int, ctx: int, chunks: int | None) -> int:
    """Chunks to score: all whole chunks, or at most `chunks`; a text shorter than two chunks is an
    error, as in llama-perplexity."""
    if n_tokens < 2 * ctx:
        raise UsageError(
            f"the text is {n_tokens} tokens; perplexity with --ctx {ctx} needs at least {2 * ctx}",
            "give a longer text, or a smaller --ctx",
        )
    whole = n_tokens // ctx
    return whole if chunks is None else min(chunks, whole)


def check_batch(ctx: int, batch: int) -> None:
    """llama-perplexity's rule: a batch is part of one chunk, or whole chunks."""
    if not (batch < ctx or batch % ctx == 0):
        raise UsageError(f"--batch {batch} must be below --ctx {ctx} or a multiple of it", f"--batch {ctx * 4}")


def scored(
    source: ChunkSource,
    tokens: Sequence[int],
    ctx: int,
    n_chunk: int,
    on_pass: Callable[[float], None] | None = None,
) -> Iterator[Scored]:
    """Each chunk's scored logits and the tokens they predict, `source.n_seq` chunks per decode;
    `on_pass` hears the seconds the first decode took (llama-perplexity's ETA)."""
    import numpy as np

    first = first_scored(ctx)
    for group in range(0, n_chunk, source.n_seq):
        started = time.perf_counter()
        count = min(source.n_seq, n_chunk - group)
        chunks = [tokens[(group + s) * ctx : (group + s + 1) * ctx] for s in range(count)]
        for offset, logits in enumerate(source.chunk_logits(chunks, first)):
            if group == 0 and offset == 0 and on_pass is not None:
                on_pass(time.perf_counter() - started)
            targets = np.asarray(chunks[offset][first + 1 :], dtype=np.int64)
            yield Scored(group + offset, logits[:-1], targets)
