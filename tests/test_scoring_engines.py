"""Prompt scoring inside the two llama.cpp engines, on SmolLM2 and the tiny hybrid models (whose
recurrent layers cannot drop a tail, so a shared prefix cannot be kept): a prompt scored after
another that shares its prefix gets the numbers it gets alone; the two engines agree; the
generated token's log-probability is the one the longer prompt gives that token."""

from __future__ import annotations

import pytest

from qwencli.backends.base import LoadOptions
from qwencli.backends.llamacpp import LlamaCppBackend
from qwencli.backends.llamacpp_batched import BatchedLlamaCppBackend
from qwencli.chat import GenerationOptions
from tests.models import build_hybrid

pytestmark = pytest.mark.slow

SCORE = GenerationOptions(max_tokens=0, logprobs=2, prompt_logprobs=True)
TEXT = "Hello there, how are you today? I am fine, thank you"


def last_chunk(backend, prompt, options):
    last = None
    for chunk in backend.complete(prompt, options):
        last = chunk
    return last


def scored(backend, tokens):
    return [e.logprob for e in last_chunk(backend, tokens, SCORE).prompt_logprobs]


@pytest.fixture(params=["smollm2", "qwen35", "qwen3next"])
def model(request, smollm2, qwen_tokenizer):
    return smollm2 if request.param == "smollm2" else build_hybrid("gguf", request.param, qwen_tokenizer)


def test_shared_prefixes_and_both_engines_give_the_same_numbers(model):
    results = {}
    for engine in (LlamaCppBackend, BatchedLlamaCppBackend):
        backend = engine(model, LoadOptions(context_length=512))
        try:
            base = backend.tokenize_text(TEXT, add_special=False)
            first, second = base + base[:2], base + base[3:5]
            after_first = scored(backend, first), scored(backend, second)
            scored(backend, base[3:9])  # something else in between: nothing shared
            alone = scored(backend, first), scored(backend, second)
            assert after_first[0][0] is None and len(after_first[1]) == len(second)
            for got, expected in zip(after_first, alone):
                assert got[1:] == pytest.approx(expected[1:], abs=1e-4)
            results[engine.__name__] = alone
            # One generated token, with its log-probability, then the same text scored as a prompt.
            one = last_chunk(backend, base, GenerationOptions(max_tokens=1, temperature=0, logprobs=0))
            [generated] = one.logprobs
            longer = scored(backend, base + [generated.token])
            assert generated.logprob == pytest.approx(longer[-1], abs=1e-4)
        finally:
            backend.close()
    plain, batched = results["LlamaCppBackend"], results["BatchedLlamaCppBackend"]
    for a, b in zip(plain, batched):
        assert a[1:] == pytest.approx(b[1:], abs=2e-3)  # two batch layouts of one engine
