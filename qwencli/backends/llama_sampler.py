"""The sampler chain of one llama.cpp reply, for both llama.cpp backends: sampling runs inside
llama.cpp (`llama_sampler_sample`), so no logits row ever crosses into Python."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def plain_greedy(options: GenerationOptions) -> bool:
    """Whether a reply only ever takes the top logit: temperature 0, no grammar, no penalty."""
    temperature = options.temperature if options.temperature is not None else 0.8
    return (
        temperature <= 0
        and output_rule(options) is None
        and (options.repeat_penalty or 1.0) == 1.0
        and not options.frequency_penalty
        and not options.presence_penalty
    )


def argmax_picker(ctx: Any, n_vocab: int) -> Callable[[], int]:
    """The token of the last logits row's top value, read in place: what the chain's greedy
    sampler picks (the first of equal maxima), without `llama_sampler_sample` filling one candidate
    per vocabulary entry every token (~0.25 ms at Qwen's 152K, a fifth of a tiny model's decode)."""
    import llama_cpp
    import numpy as np

    def pick() -> int:
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))  # a view, no copy
        return int(row.argmax())

    return pick
