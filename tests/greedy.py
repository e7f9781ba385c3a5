"""Greedy answers the tests may rely on, and the check that they hold on every CPU.

A test that asserts what a real model answers at temperature 0 rests on the greedy path: the top
token at every step. Where the top two are nearly tied, another CPU's rounding (or a different
batch shape) picks the other one and the answer changes. So every such prompt is listed here, and
`tests/test_greedy_margins.py` walks its greedy path through llama.cpp — on the shipped file and on
the same weights requantized (`tests/fixtures/numerics.py`) — and fails, naming the prompt and
the step, where the top-1/top-2 logit gap is under MIN_GAP or the variants disagree.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path

#: The smallest top-1 minus top-2 logit gap allowed on a checked step. AVX2 against AVX-512
#: rounding moved SmolLM2's logits by about 0.1 here (the near-tie that flipped was 0.1 wide);
#: requantizing to Q8_0 or F32 moves them by several times that, so 0.5 with agreement across the
#: variants leaves a wide safety factor.
MIN_GAP = 0.5

#: The demo's system prompt (Makefile DEMO_SYSTEM) and the one the SmolLM2 tests use. "Keep it
#: short." matters: with "You are a helpful assistant." alone the first token of the Paris answer
#: was a 0.09-logit tie between "The" and "La" (which starts a ramble in French); with it the
#: narrowest step of that answer leads by 1.58 on every numeric path.
SYSTEM = "You are a helpful assistant. Keep it short."


@dataclass(frozen=True)
class Expected:
    """A conversation whose greedy reply a test asserts.

    `turns` are the user's messages; each earlier turn's greedy reply (up to `max_tokens`) is part
    of the next turn's prompt, so it is checked whole. The last reply is checked up to the step
    that completes `contains`, or, when `answer` is given, exactly and to its end of turn."""

    name: str
    turns: tuple[str, ...]
    system: str | None = SYSTEM
    max_tokens: int = 48
    answer: str | None = None
    contains: str | None = None

    @property
    def question(self) -> str:
        return self.turns[-1]

    def messages(self, replies: list[str] | tuple[str, ...] = ()) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system}] if self.system else []
        for i, turn in enumerate(self.turns[: len(replies) + 1]):
            out.append({"role": "user", "content": turn})
            if i < len(replies):
                out.append({"role": "assistant", "content": replies[i]})
        return out


# Every greedy answer from SmolLM2 that a test asserts. A new one goes here first.
PARIS = Expected("paris", ("What is the capital of France?",), answer="The capital of France is Paris.")
PARIS_MULTILINE = Expected("paris-multiline", ("What is the capital\nof France?",), contains="Paris")
ROME = Expected("rome", ("What is the capital of Italy?",), answer="The capital of Italy is Rome.")
TOKYO = Expected("tokyo", ("What is the capital of Japan?",), answer="The capital of Japan is Tokyo.")
#: Memory across turns: the second answer can only come from the first turn.
SECRET_WORD = Expected("secret-word", ("The secret word is tulip.", "What is the secret word?"), contains="tulip")
#: A prompt of several decode steps (~860 tokens) whose question still has a clear answer.
LONG_FACTS = Expected(
    "long-facts",
    ("Here are some facts. " + " ".join(f"Fact {i}: the sky is blue and water is wet." for i in range(60))
     + " Now answer: What is the capital of France?",),
    max_tokens=24, answer="The capital of France is Paris.")

EXPECTED = (PARIS, PARIS_MULTILINE, ROME, TOKYO, SECRET_WORD, LONG_FACTS)


@dataclass
class Step:
    token: int
    text: str
    gap: float
    end: bool


@dataclass
class Walk:
    """One reply's greedy path: each step's token and its lead over the runner-up."""

    steps: list[Step] = field(default_factory=list)

    @property
    def text(self) -> str:
        return b"".join(s.text.encode("utf-8", "surrogateescape") for s in self.steps if not s.end).decode(
            "utf-8", "replace")

    def checked(self, contains: str | None) -> list[Step]:
        """The steps an assertion depends on: up to the one that completes `contains`, or all."""
        if contains is None:
            return self.steps
        text = ""
        for i, step in enumerate(self.steps):
            text += step.text
            if contains in text:
                return self.steps[: i + 1]
        return self.steps

    def ended(self) -> bool:
        return bool(self.steps) and self.steps[-1].end


class GreedyWalker:
    """The raw engine (llama-cpp-python, no qwencli code) walking greedy paths of one GGUF file,
    with prompts rendered by the model's own template as qwencli renders them."""

    def __init__(self, path: Path, n_ctx: int = 2048):
        import llama_cpp

        from qwencli.formats.gguf import read_model
        from qwencli.templates import ChatTemplate

        self._llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=2, verbose=False)
        model = read_model(path)
        meta = model.metadata
        vocab = self.llm._model
        bos = vocab.token_get_text(meta["tokenizer.ggml.bos_token_id"]) if "tokenizer.ggml.bos_token_id" in meta else ""
        eos = vocab.token_get_text(meta["tokenizer.ggml.eos_token_id"]) if "tokenizer.ggml.eos_token_id" in meta else ""
        self.template = ChatTemplate(model.chat_template, bos_token=bos, eos_token=eos)
        self._add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
        self._n_vocab = self.llm.n_vocab()

    def close(self) -> None:
        self.llm.close()

    def _is_end(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    def walk(self, prompt: str, max_tokens: int) -> Walk:
        import numpy as np

        llm = self.llm
        tokens = llm.tokenize(prompt.encode(), add_bos=self._add_bos, special=True)
        llm.reset()
        llm.eval(tokens)
        walk = Walk()
        while True:
            pointer = self._llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,))
            second, first = np.argpartition(logits, -2)[-2:]
            if logits[second] > logits[first]:
                first, second = second, first
            token = int(first)
            end = self._is_end(token)
            piece = "" if end else llm.detokenize([token]).decode("utf-8", "surrogateescape")
            walk.steps.append(Step(token, piece, float(logits[first] - logits[second]), end))
            if end or len(walk.steps) == max_tokens:  # as qwencli's budget: generated tokens
                break
            llm.eval([token])
        return walk

    def conversation(self, expected: Expected) -> list[Walk]:
        """The greedy reply to each turn, earlier replies kept in the prompt as qwencli keeps them."""
        from qwencli.chat import Message

        replies: list[str] = []
        walks = []
        for _ in expected.turns:
            messages = [Message(m["role"], m["content"]) for m in expected.messages(replies)]
            walks.append(self.walk(self.template.render(messages), expected.max_tokens))
            replies.append(walks[-1].text)
        return walks


def narrowest(walks: list[Walk], expected: Expected) -> tuple[int, int, float]:
    """(turn, step, gap) of the smallest gap on the steps the expectation depends on."""
    found = (0, 0, float("inf"))
    for turn, walk in enumerate(walks):
        last = turn == len(walks) - 1
        steps = walk.checked(expected.contains if last and expected.answer is None else None)
        for i, step in enumerate(steps):
            if step.gap < found[2]:
                found = (turn, i, step.gap)
    return found
