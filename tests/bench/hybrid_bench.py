"""`make bench` (hybrid part): a second REPL turn on a hybrid model against reading its whole
prompt again, on the tiny qwen35 GGUF (tests/fixtures/tiny_hybrid.py), in paired rounds.

Each round: a conversation with a long system prompt (~1,800 tokens) takes its first turn, then
the second turn's prompt time is measured three ways — warm with checkpoints (what qwencli does),
warm without them (what llama-cpp-python alone does: its prefix match fails on the recurrent
layers and it reads everything again) and on a fresh load (a full re-read). Reported: medians and
the median of the paired ratios warm / full. Target: a small fraction (≤ 0.2).

Then the token loop on the same hybrid file: qwencli's backend against raw llama-cpp-python
(`create_completion(stream=True)`) generating the same 128 greedy tokens with the same (neutral)
penalties, each side a fresh process (two engines in one process disturb each other's threads)
that answers one short warm-up request first (a context's first
decode reserves its compute graphs), alternating which goes first. Both rates are counted the same
way: tokens after the first over the time after the first. Target: ≥ 0.97.
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
    backend._checkpoints.enabled = checkpoints  # off: no checkpoint is saved, so a turn reads it all again
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


STORY = "Write a very long story about a dragon."
GEN_TOKENS, THREADS = 128, int(os.environ.get("BENCH_THREADS", "2"))


def qwen_generation(path) -> float:
    backend = LlamaCppBackend(path, LoadOptions(context_length=4096, threads=THREADS))
    # llama-cpp-python's defaults; the qwen3.5 family's presence_penalty 1.5 would change the tokens.
    options = GenerationOptions(temperature=0, max_tokens=GEN_TOKENS, repeat_penalty=1.0, presence_penalty=0.0)
    try:
        collect(backend.complete("Hi", GenerationOptions(temperature=0, max_tokens=4)))
        reply = collect(backend.complete(STORY, options))
        return (reply.usage.completion_tokens - 1) / reply.timings.generation_seconds
    finally:
        backend.close()


def raw_generation(path) -> float:
    import time

    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=4096, n_threads=THREADS, verbose=False)
    try:
        for _ in llm.create_completion("Hi", max_tokens=4, temperature=0, stream=True):
            pass
        first = end = 0.0
        n = 0
        for _ in llm.create_completion(STORY, max_tokens=GEN_TOKENS, temperature=0, stream=True):
            end = time.perf_counter()
            first = first or end
            n += 1
        return (n - 1) / (end - first)
    finally:
        llm.close()


def side(path, which: str) -> float:
    import subprocess
    import sys

    from tests.models import ROOT

    out = subprocess.run([sys.executable, "-m", "tests.bench.hybrid_bench", "--side", which, str(path)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return float(out.strip().splitlines()[-1])


def generation(path) -> None:
    ours, raw, ratios = [], [], []
    for i in range(ROUNDS):
        if i % 2:
            r, q = side(path, "raw"), side(path, "qwen")
        else:
            q, r = side(path, "qwen"), side(path, "raw")
        ours.append(q)
        raw.append(r)
        ratios.append(q / r)
    print(f"tiny qwen35, {GEN_TOKENS} greedy tokens, {THREADS} threads, {ROUNDS} rounds (medians):")
    print(f"  qwencli: {statistics.median(ours):7.1f} t/s   raw llama-cpp-python: {statistics.median(raw):7.1f} t/s")
    print(f"  qwencli / raw: {statistics.median(ratios):.3f} (rounds {min(ratios):.2f}–{max(ratios):.2f})")


def main() -> None:
    path = build_hybrid("gguf", "qwen35", QWEN_TOKENIZER)
    generation(path)
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
    import sys

    if sys.argv[1:2] == ["--side"]:
        from pathlib import Path

        rate = (qwen_generation if sys.argv[2] == "qwen" else raw_generation)(Path(sys.argv[3]))
        print(rate)
    else:
        main()
