"""Every greedy answer a test expects from a real model holds on any CPU (tests/greedy.py).

Walks each expected conversation's greedy path through the raw engine on the shipped SmolLM2 file
and on the same weights requantized, and fails, naming the prompt, the numeric path and the step,
where the lead of the top token is under MIN_GAP or the paths disagree."""

from __future__ import annotations

import pytest

from tests.greedy import EXPECTED, MIN_GAP, SYSTEM, Expected, GreedyWalker, narrowest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def walkers(smollm2_numeric_paths):
    opened = {name: GreedyWalker(path) for name, path in smollm2_numeric_paths.items()}
    yield opened
    for walker in opened.values():
        walker.close()


def replies(walks) -> list[str]:
    return [walk.text for walk in walks]


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda e: e.name)
def test_expected_answer_has_a_margin_on_every_numeric_path(walkers, expected: Expected):
    texts = {}
    for name, walker in walkers.items():
        walks = walker.conversation(expected)
        turn, step, gap = narrowest(walks, expected)
        assert gap >= MIN_GAP, (
            f"{expected.name!r} on {name}: turn {turn + 1}, step {step + 1} leads by only {gap:.2f} logits "
            f"(< {MIN_GAP}); replies so far {replies(walks)!r}. Choose a prompt with a clear answer.")
        last = walks[-1]
        if expected.answer is not None:
            assert last.text == expected.answer and last.ended(), (name, replies(walks))
        else:
            assert expected.contains in last.text, (name, replies(walks))
        checked = last.checked(expected.contains if expected.answer is None else None)
        texts[name] = (*replies(walks[:-1]), "".join(s.text for s in checked))
    assert len(set(texts.values())) == 1, f"{expected.name!r} differs between numeric paths: {texts}"


@pytest.fixture(scope="module")
def qwencli_backend(smollm2):
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(smollm2, LoadOptions(context_length=2048))
    yield backend
    backend.close()


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda e: e.name)
def test_qwencli_renders_and_decodes_as_the_walk_does(walkers, qwencli_backend, expected: Expected):
    """The walk is only worth something if qwencli gives the same greedy reply on the same file."""
    from qwencli.chat import GenerationOptions, Message, collect

    walks = next(iter(walkers.values())).conversation(expected)
    messages = [Message(m["role"], m["content"]) for m in expected.messages(replies(walks[:-1]))]
    reply = collect(qwencli_backend.chat(messages, GenerationOptions(temperature=0, max_tokens=expected.max_tokens)))
    assert reply.text == walks[-1].text


def test_the_check_catches_the_near_tie_that_flipped_on_an_avx2_cpu(walkers):
    """The old demo prompt: "The" against "La" at the first step, about 0.1 logits apart."""
    old = Expected("old-paris", ("What is the capital of France?",), system="You are a helpful assistant.")
    assert old.system != SYSTEM
    walks = next(iter(walkers.values())).conversation(old)
    turn, step, gap = narrowest(walks, old)
    assert gap < MIN_GAP and (turn, step) == (0, 0)
