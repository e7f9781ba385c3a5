"""A reply's reasoning held to `GenerationOptions.thinking_budget` (Anthropic's `budget_tokens`):
the rule on its own, then every local engine on the tiny random-weight `qwen35` (Qwen3.5's template
starts the reply inside `<think>`, and random weights never close it), where a budgeted reply's
reasoning is the unbudgeted one's first tokens and an answer follows."""

from __future__ import annotations

import threading

import pytest

from qwencli.backends.thinking_budget import ThinkingBudget
from qwencli.chat import GenerationOptions, Message

END = [900, 901, 902]  # stand-ins for "\n", "</think>", "\n\n"
TEXTS = {1: b"<think>", 2: b"</think>", 3: b"word", 4: b"\n", 5: b" "}


def budget(n: int, mode: str) -> ThinkingBudget:
    return ThinkingBudget(n, mode, END, lambda token: TEXTS[token])  # type: ignore[arg-type]


def test_the_end_is_forced_after_the_budget_of_reasoning_tokens():
    held = budget(3, "reasoning")
    assert [held.after(3), held.after(3), held.after(3)] == [[], [], END] and held.forced
    assert held.after(3) == []  # once: after it the reply is the answer


def test_a_block_the_model_closes_itself_or_never_opens_is_left_alone():
    closed = budget(3, "reasoning")
    assert [closed.after(3), closed.after(2), closed.after(3), closed.after(3)] == [[], [], [], []]
    assert not closed.forced
    text = budget(1, "detect")
    assert [text.after(5), text.after(3), text.after(3)] == [[], [], []]  # whitespace, then text: no block
    opened = budget(2, "detect")
    assert [opened.after(4), opened.after(1), opened.after(3), opened.after(3)] == [[], [], [], END]


# -- the engines ---------------------------------------------------------------------------------------

ASK = [Message("user", "hi")]


def run(backend, **options) -> tuple[str, str, str]:
    """(reasoning, text, finish reason) of a greedy reply."""
    chunks = list(backend.chat(ASK, GenerationOptions(temperature=0, max_tokens=40, **options)))
    reasoning = "".join(c.text for c in chunks if c.kind == "reasoning")
    text = "".join(c.text for c in chunks if c.kind == "text")
    return reasoning, text, chunks[-1].finish_reason


def check(unbounded, budgeted) -> None:
    assert unbounded[1] == "" and unbounded[2] == "length"  # all reasoning: it never closes by itself
    assert unbounded[0].startswith(budgeted[0]) and len(budgeted[0]) < len(unbounded[0])
    assert budgeted[1] and "</think>" not in budgeted[1] and budgeted[2] == "length"


@pytest.fixture(scope="module")
def qwen35(qwen_tokenizer):
    from tests.models import build_hybrid

    return build_hybrid("gguf", "qwen35", qwen_tokenizer)


@pytest.mark.slow
def test_llama_cpp_and_the_batched_engine_cut_the_reasoning_alike(qwen35):
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.backends.llamacpp_batched import BatchedLlamaCppBackend

    single = LlamaCppBackend(qwen35, LoadOptions(context_length=2048))
    try:
        unbounded, budgeted, shorter = run(single), run(single, thinking_budget=8), run(single, thinking_budget=4)
        check(unbounded, budgeted)
        check(unbounded, shorter)
        assert len(shorter[0]) < len(budgeted[0])
    finally:
        single.close()
    batched = BatchedLlamaCppBackend(qwen35, LoadOptions(context_length=2048), slots=2)
    try:
        results: dict[int, tuple[str, str, str]] = {}
        threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, run(batched, thinking_budget=n)))
                   for n in (8, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # Two replies in one batch, each cut at its own budget, each as the one-at-a-time engine cuts it.
        assert results == {8: budgeted, 4: shorter}
    finally:
        batched.close()


@pytest.mark.slow
def test_the_torch_backend_cuts_the_reasoning_too(qwen_tokenizer):
    pytest.importorskip("torch")
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.torch_backend import TorchBackend
    from tests.models import build_hybrid

    backend = TorchBackend(build_hybrid("hf", "qwen35", qwen_tokenizer), LoadOptions(context_length=2048))
    try:
        check(run(backend), run(backend, thinking_budget=8))
    finally:
        backend.close()
