"""Log-probabilities from llama.cpp's logits rows, for both llama.cpp backends.

A row is read in place (a numpy view of llama.cpp's output buffer, no copy) right after the
`llama_decode` that wrote it, before the next decode overwrites it: for a generated token, the
row the sampler has just drawn from; for a prompt token, the row of the position before it. The
log-softmax is of the raw logits (the model's distribution, before penalties and temperature),
as OpenAI and vLLM report it. A token's own log-probability and its alternatives' come from the
same float64 values, so "was the token the top one" is an exact comparison (lm-eval's is_greedy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..chat import TokenLogprob

#: The most alternatives a request may ask for (OpenAI's chat limit; vLLM and llama-server allow it too).
MAX_TOP_LOGPROBS = 20


class RowReader:
    """Turns the logits row at a batch index into the log-probability of a given token."""

    def __init__(self, ctx: Any, n_vocab: int, piece: Callable[[int], bytes]):
        import llama_cpp
        import numpy as np

        self._np = np
        self._row = lambda index: np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(n_vocab,))
        self._piece = piece

    def read(self, index: int, token: int, top_n: int) -> TokenLogprob:
        """`token`'s log-probability in the row at batch `index` (-1: the last row), with the
        `top_n` most likely tokens of that row."""
        np = self._np
        row = self._row(index).astype(np.float64)
        high = row.max()
        logprobs = row - (high + np.log(np.exp(row - high).sum()))
        top: tuple[tuple[int, bytes, float], ...] = ()
        if top_n > 0:
            best = np.argpartition(logprobs, -top_n)[-top_n:]
            # Most likely first; equal values by token id, so the order never depends on the partition.
            ranked = sorted(best.tolist(), key=lambda t: (-logprobs[t], t))
            top = tuple((t, self._piece(t), float(logprobs[t])) for t in ranked)
        return TokenLogprob(token, self._piece(token), float(logprobs[token]), top)


def first_prompt_token(token: int, piece: Callable[[int], bytes]) -> TokenLogprob:
    """The first prompt token: nothing predicts it (OpenAI's `token_logprobs[0]` is null)."""
    return TokenLogprob(token, piece(token), None)
