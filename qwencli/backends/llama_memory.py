"""Reusing a hybrid model's memory across requests: recurrent-state checkpoints.

Attention layers keep one KV cell per token, so a new prompt that shares a prefix with the last
one drops the cells after it and reads on. Gated DeltaNet (Qwen3.5/3.6/3.8, Qwen3-Next) and other
recurrent layers keep a running state instead: llama.cpp cannot take a tail back out of it, so
`llama_memory_seq_rm` refuses and the whole prompt is read again — on every turn, since a chat's
next prompt never extends the last one exactly (Qwen3.5's template drops a reply's reasoning from
the history, and the reply's end-of-turn token was never evaluated).

So, as llama-server does (its context checkpoints), we save the recurrent part of the state
(`LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY`; the attention cells stay in place) where a later prompt is
likely to part from this one — where the last message's text starts and where the history ends,
before the generation prompt (pipeline.checkpoint_prefixes) — and a later prompt that starts with
a saved prefix restores that state, drops the attention cells after it and reads only the rest.
The next turn, /regen, /undo and a sibling question then re-read one exchange, not the whole
conversation.
"""

from __future__ import annotations

import ctypes
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from .local import common_prefix

#: Checkpoints kept per sequence (the oldest goes first): two a turn, so /regen, a sibling question
#: and an /undo find theirs. One holds the recurrent state only: for Qwen3.5-9B about 50 MB.
KEEP = 4


@dataclass(frozen=True)
class _Checkpoint:
    tokens: tuple[Hashable, ...]  # the prefix the state has read (tokens, or layout cells with images)
    state: Any  # ctypes buffer


class RecurrentCheckpoints:
    """The checkpoints of one sequence of a llama.cpp context (on its engine thread)."""

    def __init__(self, model: Any, ctx: Any, seq_id: int = 0):
        import llama_cpp

        self.enabled = bool(llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))
        self._ctx = ctx
        self._seq = seq_id
        self._saved: list[_Checkpoint] = []

    def clear(self) -> None:
        self._saved.clear()

    def save(self, tokens: Sequence[Hashable]) -> None:
        """Snapshot the recurrent state, which has read exactly `tokens`."""
        import llama_cpp

        flags = llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        size = llama_cpp.llama_state_seq_get_size_ext(self._ctx, self._seq, flags)
        buffer = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data_ext(self._ctx, buffer, size, self._seq, flags) != size:
            return  # no checkpoint is only slower
        key = tuple(tokens)
        self._saved = [c for c in self._saved if c.tokens != key][-(KEEP - 1) :] + [_Checkpoint(key, buffer)]

    def restore(self, memory: Any, tokens: Sequence[Hashable], limit: int) -> int:
        """Put back the longest checkpoint that `tokens` extends (by at least one token, whose
        logits start the reply) and drop the attention cells after it; its length, or 0.

        `limit`: how many attention cells still hold `tokens` (the common prefix with what the
        memory read last); a longer checkpoint would pair its state with another branch's cells."""
        import llama_cpp

        flags = llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        usable = [
            c
            for c in self._saved
            if len(c.tokens) <= limit and len(c.tokens) < len(tokens) and tuple(tokens[: len(c.tokens)]) == c.tokens
        ]
        for checkpoint in sorted(usable, key=lambda c: len(c.tokens), reverse=True):
            n = len(checkpoint.tokens)
            state = checkpoint.state
            if llama_cpp.llama_state_seq_set_data_ext(self._ctx, state, len(state), self._seq, flags) != len(state):
                continue
            # The restored state ends at n - 1, so only attention cells are at n and after.
            if llama_cpp.llama_memory_seq_rm(memory, self._seq, n, -1):
                return n
        return 0


def reuse(llama: Any, checkpoints: RecurrentCheckpoints, tokens: list[int], marks: Sequence[int]) -> int:
    """Bring `llama` (a `llama_cpp.Llama`) to the longest prefix of `tokens` its memory can really
    continue from, and read on through `marks` (ascending prompt positions), checkpointing at each.
    Returns the prompt tokens that were not read again; `Llama.generate` reads the rest."""
    n = llama.n_tokens
    common = common_prefix(llama.input_ids[:n], tokens)
    if not checkpoints.enabled:
        # Attention only: generate() drops the cells after the common prefix itself. At least the
        # last prompt token is read again: its logits give the first reply token.
        return min(common, len(tokens) - 1)
    if n and common == n < len(tokens):
        kept = n  # the prompt extends the memory: nothing to take back
    else:
        kept = checkpoints.restore(llama._ctx.memory, tokens, common) if n else 0
        if kept:
            llama.n_tokens = kept
        elif n:
            llama.reset()
    at = kept
    for mark in marks:
        if at < mark < len(tokens):
            llama.eval(tokens[at:mark])
            checkpoints.save(tokens[:mark])
            at = mark
    return kept


def checkpoint_positions(vocab: Any, tokens: list[int], prefixes: Sequence[str]) -> list[int]:
    """The prompt positions that end `prefixes` (pipeline.checkpoint_prefixes) on a token boundary."""
    positions = []
    for prefix in prefixes:
        mark = vocab.tokenize(prefix)
        if 0 < len(mark) < len(tokens) and tokens[: len(mark)] == mark:
            positions.append(len(mark))
    return sorted(set(positions))
