"""How one llama.cpp reply picks its tokens, for both llama.cpp backends: llama.cpp's own sampler
chain (`llama_sampler_sample`), or for a greedy reply without a grammar an argmax over the logits
row where llama.cpp left it (`GreedyPicker`). No row is ever copied into Python."""

from __future__ import annotations

import collections
from typing import Any, Protocol

from ..chat import GenerationOptions
from .llama_grammar import gbnf
from .llama_lib import SamplerChain
from .llama_vocab import LlamaVocab
from .local import PENALTY_WINDOW, grammar_rejected, output_rule


def sampler_chain(options: GenerationOptions, vocab: LlamaVocab) -> Any:
    """A new chain for one reply (the caller closes it): penalties, the grammar if any, then
    greedy or top-k → typical → top-p → min-p → temperature → draw, in `Llama.generate`'s order
    and with its default values (what this backend ran before, and what the tests' answers are)."""
    import llama_cpp

    grammar = gbnf(options)
    chain = SamplerChain()
    chain.add(
        llama_cpp.llama_sampler_init_penalties(
            vocab.size,
            PENALTY_WINDOW,
            options.repeat_penalty or 1.0,
            options.frequency_penalty or 0.0,
            options.presence_penalty or 0.0,
        )
    )
    if grammar is not None:
        grammar_sampler = llama_cpp.llama_sampler_init_grammar(vocab.vocab, grammar.encode(), b"root")
        if not grammar_sampler:  # llama.cpp rejects the grammar: NULL, never add that to a chain
            chain.close()
            raise grammar_rejected("llama.cpp rejected it")
        chain.add(grammar_sampler)
    temperature = options.temperature if options.temperature is not None else 0.8
    if temperature <= 0:
        chain.add(llama_cpp.llama_sampler_init_greedy())
    else:
        chain.add(llama_cpp.llama_sampler_init_top_k(options.top_k if options.top_k is not None else 40))
        chain.add(llama_cpp.llama_sampler_init_typical(1.0, 1))
        chain.add(llama_cpp.llama_sampler_init_top_p(options.top_p if options.top_p is not None else 0.95, 1))
        chain.add(llama_cpp.llama_sampler_init_min_p(options.min_p if options.min_p is not None else 0.05, 1))
        chain.add(llama_cpp.llama_sampler_init_temp(temperature))
        chain.add(
            llama_cpp.llama_sampler_init_dist(
                options.seed if options.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            )
        )
    return chain


def in_place_greedy(options: GenerationOptions) -> bool:
    """Whether a reply only ever takes the top (penalized) logit: temperature 0 and no grammar.
    Then `GreedyPicker` reads the logits row in place instead of running the chain."""
    temperature = options.temperature if options.temperature is not None else 0.8
    return temperature <= 0 and output_rule(options) is None


class Picker(Protocol):
    """How a reply chooses its tokens: `picker(index)` takes one from logits row `index` (-1: the
    last); `accept(token)` records a token the reply got otherwise (a forced end of thinking), so
    the penalties count it as the reply's own."""

    def __call__(self, index: int = -1) -> int: ...

    def accept(self, token: int) -> None: ...


class ChainPicker:
    """The reply's sampler chain (`sampler_chain`), which records what it samples itself."""

    def __init__(self, ctx: Any, chain: Any):
        import llama_cpp

        self._ctx, self._chain = ctx, chain
        self._sample, self._accept = llama_cpp.llama_sampler_sample, llama_cpp.llama_sampler_accept

    def __call__(self, index: int = -1) -> int:
        return int(self._sample(self._chain, self._ctx, index))

    def accept(self, token: int) -> None:
        self._accept(self._chain, token)


#: Up to this many distinct tokens in the penalty window, `GreedyPicker` penalizes them one by one
#: (measured: faster than numpy's vector calls up to about 40).
FEW = 32


class GreedyPicker:
    """The token the chain of `sampler_chain(options)` would pick when greedy, read in place.
    `llama_sampler_sample` fills one candidate per vocabulary entry every token (~0.16 ms at
    Qwen's 152K, an eighth of a tiny model's decode); this costs one argmax over the row plus the
    penalty window's few tokens.

    The penalties are llama.cpp's (llama-sampler.cpp, penalties_apply) over the last
    PENALTY_WINDOW tokens of the reply, in float32 as there: a repeated token's logit is divided by
    `repeat_penalty` (multiplied when ≤ 0), then `count·frequency + presence` is subtracted. They
    are written into the row for the argmax, and the row is put back when log-probs read it. Greedy
    takes the first of equal maxima, i.e. the lowest token id, as numpy's argmax does."""

    def __init__(self, ctx: Any, n_vocab: int, options: GenerationOptions):
        import numpy as np

        from .llama_lib import logits_address

        self._np, self._logits_at = np, logits_address()
        self._ctx, self._n_vocab = ctx, n_vocab
        # The row's array, rebuilt only when llama.cpp moves its output buffer (a bigger batch of
        # outputs); -1 is no address, not even NULL's None.
        self._address: int | None = -1
        self._row: Any = None
        self._floats: Any = None  # the same row as a ctypes array: a float at a time, no numpy call
        self._repeat = np.float32(options.repeat_penalty or 1.0)
        self._frequency = np.float32(options.frequency_penalty or 0.0)
        self._presence = np.float32(options.presence_penalty or 0.0)
        self._penalized = self._repeat != 1 or self._frequency != 0 or self._presence != 0
        self._by_count = self._frequency != 0 or self._presence != 0
        self._repeat_float = float(self._repeat)  # the float32 value, as a Python float
        self._restore = options.logprobs is not None  # the row's log-probabilities are read after the pick
        self._window: collections.deque[int] = collections.deque(maxlen=PENALTY_WINDOW)
        self._counts: collections.Counter[int] = collections.Counter()

    def _move_to(self, address: int | None, index: int) -> None:
        """Point the row's arrays at `address` (llama.cpp moved its output buffer)."""
        if not address:
            raise IndexError(f"llama.cpp has no logits row {index}")
        import ctypes

        self._floats = (ctypes.c_float * self._n_vocab).from_address(address)
        self._row = self._np.ctypeslib.as_array(self._floats)
        self._address = address

    def __call__(self, index: int = -1) -> int:
        # The row's lookup written out here, not in a method: on a cache the decode has just swept,
        # each Python call costs microseconds.
        address = self._logits_at(self._ctx, index)
        if address != self._address:
            self._move_to(address, index)
        row = self._row
        counts = self._counts
        if not counts:  # nothing penalized yet, or no penalties: `accept` records nothing then
            best = int(row.argmax())
        elif len(counts) <= FEW and not self._by_count:
            # A repeat penalty on a few tokens: cheaper float by float than through numpy's calls,
            # each of which costs microseconds more than its work on a cache a decode just swept.
            # Exact in float32: a product or quotient of two float32s, worked in double and
            # stored back to a float32, rounds as float32 arithmetic does.
            floats, repeat = self._floats, self._repeat_float
            original = [floats[token] for token in counts]
            for token, logit in zip(counts, original):
                floats[token] = logit * repeat if logit <= 0 else logit / repeat
            best = int(row.argmax())
            if self._restore:
                for token, logit in zip(counts, original):
                    floats[token] = logit
        else:
            np = self._np
            ids = np.fromiter(counts, dtype=np.intp, count=len(counts))
            original = row.take(ids)
            penalized = original / self._repeat
            np.multiply(original, self._repeat, out=penalized, where=original <= 0)
            if self._by_count:
                seen = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
                penalized -= seen * self._frequency + self._presence
            row.put(ids, penalized)
            best = int(row.argmax())
            if self._restore:
                row.put(ids, original)
        if self._penalized:
            self.accept(best)
        return best

    def accept(self, token: int) -> None:
        if not self._penalized:
            return
        window, counts = self._window, self._counts
        if len(window) == window.maxlen:
            old = window[0]
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
        window.append(token)
        counts[token] += 1


def picker(ctx: Any, chain: Any, n_vocab: int, options: GenerationOptions) -> Picker:
    """A greedy reply's tokens read in place (`GreedyPicker`), any other's from its chain."""
    return GreedyPicker(ctx, n_vocab, options) if in_place_greedy(options) else ChainPicker(ctx, chain)
