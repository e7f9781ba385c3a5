"""`make bench` (hybrid part): a second REPL turn on a hybrid model against reading its whole
prompt again, on the tiny qwen35 GGUF (tests/fixtures/tiny_hybrid.py), in paired rounds.

Each round: a conversation with a long system prompt (~1,800 tokens) takes its first turn, then
the second turn's prompt time is measured three ways — warm with checkpoints (what qwencli does),
warm without them (what llama-cpp-python alone does: its prefix match fails on the recurrent
layers and it reads everything again) and on a fresh load (a full re-read). Reported: medians and
the median of the paired ratios warm / full. Target: a small fraction (≤ 0.2).
"""

from __future__ import annotations

import os
import statistics

from qwencli.backends.base import LoadOptions
from qwencli.backends.llamacpp import LlamaCppBackend
from qwencli.chat import GenerationOptions, collect
from qwencli.session import Conversation
from tests.models import QWEN_TOKENIZER, build_hybrid

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SYSTEM = "You are a helpful assistant who answers in full sentences. " * 150
OPTIONS = GenerationOptions(temperature=0, max_tokens=16, think=False)
LOAD = LoadOptions(context_length=4096)


def second_turn(path, *, checkpoints: bool) -> tuple[float, int, list]:
    backend = LlamaCppBackend(path, LOAD)
    backend._checkpoints.enabled = checkpoints  # off: llama-cpp-python's own prefix reuse only
    try:
        conversation = Conversation(backend, system=SYSTEM, options=OPTIONS)
        collect(conversation.ask("Hello there, who are you?"))
        reply = collect(conversation.ask("Tell me more about that."))
        return reply.timings.prompt_seconds, reply.usage.prompt_tokens, conversation.messages()[:-1]
    finally:
        backend.close()


def full_read(path, messages) -> float:
    backend = LlamaCppBackend(path, LOAD)
    try:
        return collect(backend.chat(messages, OPTIONS)).timings.prompt_seconds
    finally:
        backend.close()


def main() -> None:
    path = build_hybrid("gguf", "qwen35", QWEN_TOKENIZER)
    warm, plain, full, ratios = [], [], [], []
    tokens = 0
    for _ in range(ROUNDS):
        seconds, tokens, messages = second_turn(path, checkpoints=True)
        without, _, _ = second_turn(path, checkpoints=False)
        fresh = full_read(path, messages)
        warm.append(seconds)
        plain.append(without)
        full.append(fresh)
        ratios.append(seconds / fresh)
    print(f"tiny qwen35, second turn of {tokens} prompt tokens, {ROUNDS} rounds (medians):")
    print(f"  warm, with checkpoints:    {statistics.median(warm) * 1000:7.1f} ms")
    print(f"  warm, without checkpoints: {statistics.median(plain) * 1000:7.1f} ms")
    print(f"  full re-read (fresh load): {statistics.median(full) * 1000:7.1f} ms")
    print(f"  warm / full re-read:       {statistics.median(ratios):7.3f}")


if __name__ == "__main__":
    main()
