"""Perplexity as `llama-perplexity` computes it: the negative log-likelihood of each scored token
from a float32 log-softmax (the sum of exponentials in double), PPL = exp(mean NLL), and its
uncertainty, PPL × the standard error of the mean NLL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .chunks import ChunkSource, Scored, chunk_count, scored

if TYPE_CHECKING:
    import numpy as np


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """−log p(target) per row of `logits` (float32, as llama.cpp's `log_softmax`), in float64."""
    import numpy as np

    top = logits.max(axis=1)
    sum_exp = np.exp(logits - top[:, None]).sum(axis=1, dtype=np.float64)
    picked = logits[np.arange(len(targets)), targets]
    return (top - picked).astype(np.float64) + np.log(sum_exp)


@dataclass
class RunningPerplexity:
    """The sums llama-perplexity keeps: Σ NLL, Σ NLL², tokens."""

    nll: float = 0.0
    nll2: float = 0.0
    count: int = 0

    def add(self, nlls: np.ndarray) -> None:
        self.nll += float(nlls.sum())
        self.nll2 += float((nlls * nlls).sum())
        self.count += len(nlls)

    @property
    def value(self) -> float:
        return math.exp(self.nll / self.count)

    @property
    def uncertainty(self) -> float | None:
        """PPL × sqrt(var(NLL) / (n − 1)); None where llama.cpp reports a negative variance."""
        mean = self.nll / self.count
        variance = self.nll2 / self.count - mean * mean
        if variance <= 0 or self.count < 2:
            return None
        return math.sqrt(variance / (self.count - 1)) * self.value


@dataclass
class PerplexityResult:
    ppl: float
    uncertainty: float | None
    chunks: int
    ctx: int
    tokens: int  # of the text
    scored: int
    seconds: float
    running: list[float] = field(default_factory=list)  # PPL after each chunk


def measure(
    source: ChunkSource,
    tokens: list[int],
    *,
    ctx: int,
    chunks: int | None,
    on_chunk: Callable[[int, float], None] | None = None,
    on_pass: Callable[[float], None] | None = None,
    each: Callable[[Scored, np.ndarray], None] | None = None,
) -> PerplexityResult:
    """Perplexity of `tokens` under `source`; `on_chunk(number, ppl so far)` after each chunk, and
    `each(chunk, nlls)` for a caller that keeps more of a chunk (the `.kld` writer)."""
    import time

    started = time.perf_counter()
    n_chunk = chunk_count(len(tokens), ctx, chunks)
    running, history = RunningPerplexity(), []
    for chunk in scored(source, tokens, ctx, n_chunk, on_pass):
        nlls = token_nll(chunk.logits, chunk.targets)
        if each is not None:
            each(chunk, nlls)
        running.add(nlls)
        history.append(running.value)
        if on_chunk is not None:
            on_chunk(chunk.index + 1, running.value)
    return PerplexityResult(
        ppl=running.value,
        uncertainty=running.uncertainty,
        chunks=n_chunk,
        ctx=ctx,
        tokens=len(tokens),
        scored=running.count,
        seconds=time.perf_counter() - started,
        running=history,
    )
