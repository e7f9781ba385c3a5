"""`make bench`, part 2: qwencli's llama.cpp backend against llama.cpp's own `llama-bench`.

Needs `LLAMA_BENCH=/path/to/llama-bench`, built from the llama.cpp tree llama-cpp-python vendors
(the same code qwencli links), e.g.

    cmake -S …/vendor/llama.cpp -B /work/llama-build -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release
    cmake --build /work/llama-build --target llama-bench -j2

Same file, same threads, flash attention off on both sides (as qwencli loads: see llama_load).
Paired rounds, alternating, each side a fresh process: llama-bench pp512 + tg128 (REPS
repetitions each, their mean), then qwencli reading REPS 512-token prompts and generating REPS ×
128 tokens (the mean rate). Reported: medians and the median of the rounds' ratios. Targets:
≥ 0.97 for both, on SmolLM2 (49K vocabulary) and on a tiny random-weight Qwen2 (152K vocabulary,
where a per-token copy of the logits row would show). llama-bench times `llama_decode` alone and
never samples; a reply also picks each token (an argmax over the row, with Qwen's repeat penalty
1.05: about 40 µs at 152K on a cache the decode has just swept), so on the tiny model, whose
decode takes only ~1.1 ms, a few per cent of the gap is the sampling any real reply needs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tests.models import QWEN_TOKENIZER, ROOT, SMOLLM2, build_tiny

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
# Repetitions within a round, each side (llama-bench's -r; its default is 5): one tg128 of the tiny
# model is ~0.15 s, shorter than this VM's slow spells, so a single one is mostly noise.
REPS = int(os.environ.get("BENCH_REPS", "3"))
WORDS = ("hello", "house", "green", "river", "stone")
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
PROMPT_TOKENS, GEN_TOKENS = 512, 128
# SmolLM2 writes this story past 128 tokens; the tiny Qwen follows "Loop" → "Loop" for ever.
STORY = "Write a very long story about a dragon who learns to fly over the sea."


def llama_bench(binary: str, model: Path) -> tuple[float, float]:
    """(pp512, tg128) tokens/s: llama-bench's mean over REPS repetitions."""
    out = subprocess.run(
        [binary, "-m", str(model), "-t", str(THREADS), "-p", str(PROMPT_TOKENS), "-n", str(GEN_TOKENS),
         "-r", str(REPS), "-fa", "0", "-o", "json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] == PROMPT_TOKENS and r["n_gen"] == 0)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] == GEN_TOKENS and r["n_prompt"] == 0)
    return pp, tg


def qwen_side(model: Path, kind: str) -> tuple[float, float]:
    result = subprocess.run([sys.executable, "-m", "tests.bench.engine_bench", "--qwen", str(model), kind],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    return tuple(json.loads(result.stdout.strip().splitlines()[-1]))


def measure_qwen(model: Path, kind: str) -> tuple[float, float]:
    """(prompt, generation) tokens/s of the plain llama.cpp backend, as its replies report them:
    the mean of REPS reads and REPS generations, as llama-bench's avg_ts is of its repetitions."""
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.chat import GenerationOptions, Message, collect

    backend = LlamaCppBackend(model, LoadOptions(threads=THREADS))
    try:
        def prompt_of(word: str) -> str:
            words = [word] * PROMPT_TOKENS  # a word is at least a token: drop the surplus until it fits
            while (n := len(backend._engine.call(backend._vocab.tokenize, " ".join(words)))) > PROMPT_TOKENS:
                del words[PROMPT_TOKENS - n :]
            return " ".join(words)

        # As llama-bench warms up: a whole 512-token batch first (its graph and KV pages are
        # set up on the first one), with another word, so no measured prompt shares a prefix.
        warm = collect(backend.complete(prompt_of("world"), GenerationOptions(temperature=0, max_tokens=2)))
        assert warm.usage.cached_tokens == 0
        prompt_rates, gen_rates = [], []
        greedy = GenerationOptions(temperature=0, max_tokens=GEN_TOKENS)
        for word in WORDS[:REPS]:  # as llama-bench: its pp repetitions, then its tg ones
            read = collect(backend.complete(prompt_of(word), GenerationOptions(temperature=0, max_tokens=1)))
            assert read.usage.cached_tokens <= 1 and read.usage.prompt_tokens > 0.95 * PROMPT_TOKENS, read.usage
            prompt_rates.append(read.timings.rates(read.usage)["prompt_tokens_per_second"])
        for _ in range(REPS):
            if kind == "tiny":  # a raw completion: a chat would end after "Hello world"
                gen = collect(backend.complete("Loop", greedy))
            else:
                gen = collect(backend.chat([Message("user", STORY)], greedy))
            assert gen.usage.completion_tokens == GEN_TOKENS, f"{kind} stopped after {gen.usage.completion_tokens}"
            gen_rates.append(gen.timings.rates(gen.usage)["generation_tokens_per_second"])
        return statistics.mean(prompt_rates), statistics.mean(gen_rates)
    finally:
        backend.close()


def main() -> None:
    binary = os.environ.get("LLAMA_BENCH")
    if not binary:
        print("decode/prompt vs llama-bench: skipped (set LLAMA_BENCH=/path/to/llama-bench; see "
              "tests/bench/engine_bench.py for how to build it from the vendored llama.cpp)")
        return
    models = {"SmolLM2": SMOLLM2, "tiny": build_tiny("gguf", "qwen2", QWEN_TOKENIZER)}
    print(f"qwencli's llama.cpp backend vs llama-bench, {THREADS} threads, flash attention off, {ROUNDS} paired "
          "rounds (medians; ratio: median of the rounds' ratios)")
    print(f"{'':26} {'llama-bench':>12} {'qwencli':>10} {'ratio':>7}  ratios seen")
    for kind, model in models.items():
        llama_bench(binary, model), qwen_side(model, kind)  # warm the page cache for both
        bench: list[tuple[float, float]] = []
        ours: list[tuple[float, float]] = []
        for _ in range(ROUNDS):
            bench.append(llama_bench(binary, model))
            ours.append(qwen_side(model, kind))
        for i, name in enumerate((f"pp{PROMPT_TOKENS}", f"tg{GEN_TOKENS}")):
            b = [r[i] for r in bench]
            q = [r[i] for r in ours]
            ratios = [y / x for x, y in zip(b, q)]
            label = f"{kind} {model.name[:14]} {name}"
            print(f"{label:26} {statistics.median(b):>8.1f} t/s {statistics.median(q):>6.1f} t/s "
                  f"{statistics.median(ratios):>7.3f}  {min(ratios):.3f}–{max(ratios):.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--qwen"]:
        print(json.dumps(measure_qwen(Path(sys.argv[2]), sys.argv[3])))
    else:
        main()
