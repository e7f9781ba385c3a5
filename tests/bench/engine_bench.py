"""`make bench`, part 2: qwencli's llama.cpp backend against llama.cpp's own `llama-bench`.

Needs `LLAMA_BENCH=/path/to/llama-bench`, built from the llama.cpp tree llama-cpp-python vendors
(the same code qwencli links), e.g.

    cmake -S …/vendor/llama.cpp -B /work/llama-build -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release
    cmake --build /work/llama-build --target llama-bench -j2

Same file, same threads, flash attention off on both sides (as qwencli loads: see llama_load).
Each test (pp512, tg128) on its own, in rounds of four turns, ABBA: llama-bench, qwencli,
qwencli, llama-bench (BAAB in odd rounds). A llama-bench turn is a process timing one repetition
(`-r 1`) after its warm-up run (a whole pp512; one token for tg); a qwencli turn is the same on a
worker process that loaded the model once, as a REPL or a server has: a warm-up reply (a
512-token prompt read; one decoded token), then the timed one (a 512-token prompt read, or 128
tokens generated). This VM's speed wanders by up to 2× over a few seconds (memory bandwidth
shared with its neighbours; the tiny model's decode is bound by it), so the halves of a pair must
be close in time, and ABBA cancels a drift within the round. At least ROUNDS rounds a test, more
while they fit in BENCH_SECONDS (a tiny-model round takes ~2 s, a SmolLM2 pp512 one ~9 s), at most
MAX_ROUNDS. Reported: medians, and the median of the rounds' ratios (each round's two qwencli
turns over its two llama-bench turns). Targets: ≥ 0.97 for both, on SmolLM2 (49K vocabulary) and
on a tiny random-weight Qwen2 (152K vocabulary, where a per-token copy of the logits row would
show). llama-bench times `llama_decode` alone and never samples; a reply also picks each token
(an argmax over the row, with Qwen's repeat penalty 1.05: about 40 µs at 152K on a cache the
decode has just swept), so on the tiny model, whose decode takes only ~1–2 ms, a few per cent of
the gap is the sampling any real reply needs.

Then, without llama-bench too, a measure the VM's wander blurs less: in the worker, turn about,
a reply's generation against llama-bench's own loop (`test_gen`) written over the same context
from Python (`bare_generation`): what qwencli costs a token, argmax included; and that loop
taking each row's argmax against it: the least any loop that samples pays. Last, the same three
with `llama_decode` timed (`DecodeClock`): a token's time outside it, in µs, which the VM's
speed moves far less than a ratio of two rates.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from tests.bench.pairing import abba
from tests.models import QWEN_TOKENIZER, ROOT, SMOLLM2, build_tiny

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
BUDGET = float(os.environ.get("BENCH_SECONDS", "45"))
MAX_ROUNDS = 40
LOOP_ROUNDS = 8  # ABBA rounds of our reply against llama-bench's loop in one process (~0.2–1.5 s a turn)
WORDS = ("hello", "house", "green", "river", "stone")
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
PROMPT_TOKENS, GEN_TOKENS = 512, 128
# SmolLM2 writes this story past 128 tokens; the tiny Qwen follows "Loop" → "Loop" for ever.
STORY = "Write a very long story about a dragon who learns to fly over the sea."


def llama_bench(binary: str, model: Path, test: str) -> float:
    """tokens/s of one repetition of llama-bench's `pp` (PROMPT_TOKENS) or `tg` (GEN_TOKENS) test."""
    sizes = ["-p", str(PROMPT_TOKENS), "-n", "0"] if test == "pp" else ["-p", "0", "-n", str(GEN_TOKENS)]
    out = subprocess.run([binary, "-m", str(model), "-t", str(THREADS), *sizes, "-r", "1", "-fa", "0",
                          "-o", "json"], capture_output=True, text=True, check=True).stdout
    (row,) = json.loads(out)
    return row["avg_ts"]


class Worker:
    """qwencli's side: `measure_qwen` in its own process, one test a line on its stdin."""

    def __init__(self, model: Path, kind: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.bench.engine_bench", "--qwen", str(model), kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self._answer() == "ready"

    def ask(self, test: str):
        """The worker's answer to one test line (JSON: a rate, or the in-process loop's figures)."""
        assert self.proc.stdin
        self.proc.stdin.write(test + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def _answer(self):
        assert self.proc.stdout
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the qwencli worker exited ({self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def bare_generation(backend, *, argmax: bool = False) -> float:
    """tokens/s of llama-bench's generation loop (`test_gen`) over the backend's own context, from
    Python, on the engine thread: GEN_TOKENS one-token decodes of random ids, nothing sampled,
    nothing detokenized. What is left between it and a reply is qwencli's per-token cost (and
    the argmax); the machine's wander falls on both alike, as they run turn about in one process.
    `argmax`: each next id is the argmax of the row instead, read in place: the least any loop
    that samples pays (on the tiny model, a ~1–2 ms decode and a 152K-float row)."""
    import ctypes
    import random

    import llama_cpp
    import numpy as np

    from qwencli.backends.llama_lib import logits_address

    ctx, n_vocab, row_at = backend._handles.ctx.ctx, backend._vocab.size, logits_address()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    backend._cached.clear()  # the backend's record of the cache: empty now
    backend._scored.clear()
    token = ctypes.c_int32(random.randrange(n_vocab))
    # Made once, as llama-bench's loop would be if it could: the batch points at `token`, and
    # llama.cpp numbers a batch without positions from what the sequence holds.
    batch, decode = llama_cpp.llama_batch_get_one(ctypes.pointer(token), 1), llama_cpp.llama_decode
    address, row = None, None
    started = time.perf_counter()
    for _ in range(GEN_TOKENS):
        if decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        if argmax:
            if (at := row_at(ctx, -1)) != address:  # it synchronizes, as llama_synchronize does
                address, row = at, np.ctypeslib.as_array((ctypes.c_float * n_vocab).from_address(at))
            token.value = int(row.argmax())
        else:
            llama_cpp.llama_synchronize(ctx)
            token.value = random.randrange(n_vocab)
    rate = GEN_TOKENS / (time.perf_counter() - started)
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    return rate


class DecodeClock:
    """While entered, `llama_cpp.llama_decode` is timed: `outside()` is then the median time a
    token spent outside it (from the end of one decode to the start of the next) and `inside()`
    the median decode. A token loop looks its `llama_decode` up when it starts (Batch.token_decoder),
    so a reply started within sees the wrapper."""

    def __enter__(self) -> DecodeClock:
        import llama_cpp

        self.marks: list[tuple[float, float]] = []
        real = self._real = llama_cpp.llama_decode
        clock, marks = time.perf_counter, self.marks

        def timed(ctx, batch):
            started = clock()
            status = real(ctx, batch)
            marks.append((started, clock()))
            return status

        llama_cpp.llama_decode = timed
        return self

    def __exit__(self, *exc) -> None:
        import llama_cpp

        llama_cpp.llama_decode = self._real

    def outside(self) -> float:
        return statistics.median(b[0] - a[1] for a, b in itertools.pairwise(self.marks[2:]))

    def inside(self) -> float:
        return statistics.median(end - start for start, end in self.marks[2:])


def measure_qwen(model: Path, kind: str) -> None:
    """Answer `pp` and `tg` lines on stdin with the plain llama.cpp backend's prompt (or
    generation) tokens/s, as one reply reports them. Each prompt is of a fresh word, so none
    shares a cached prefix with the last."""
    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.chat import GenerationOptions, Message, collect

    backend = LlamaCppBackend(model, LoadOptions(threads=THREADS))
    fresh = itertools.cycle(f"{word}{end}" for word in WORDS for end in ("", "s", "ed"))
    try:
        def prompt_of(word: str) -> str:
            words = [word] * PROMPT_TOKENS  # a word is at least a token: drop the surplus until it fits
            while (n := len(backend._engine.call(backend._vocab.tokenize, " ".join(words)))) > PROMPT_TOKENS:
                del words[-max(1, (n - PROMPT_TOKENS) * len(words) // n) :]
            return " ".join(words)

        def read() -> float:
            reply = collect(backend.complete(prompt_of(next(fresh)), GenerationOptions(temperature=0, max_tokens=1)))
            assert reply.usage.cached_tokens <= 1 and reply.usage.prompt_tokens > 0.95 * PROMPT_TOKENS, reply.usage
            return reply.timings.rates(reply.usage)["prompt_tokens_per_second"]

        def generate(tokens: int = GEN_TOKENS) -> float:
            greedy = GenerationOptions(temperature=0, max_tokens=tokens)
            if kind == "tiny":  # a raw completion: a chat would end after "Hello world"
                reply = collect(backend.complete("Loop", greedy))
            else:
                reply = collect(backend.chat([Message("user", STORY)], greedy))
            assert reply.usage.completion_tokens == tokens, f"{kind} stopped after {reply.usage.completion_tokens}"
            return reply.timings.rates(reply.usage)["generation_tokens_per_second"]

        def bare(argmax: bool = False) -> float:
            return backend._engine.call(bare_generation, backend, argmax=argmax)

        def loop() -> dict[str, float]:
            """Our generation against llama-bench's loop in this process, turn about; then that
            loop with an argmax against it; then µs a token outside `llama_decode` for the three."""
            measured = {}
            for name, other in (("reply", generate), ("argmax", partial(bare, argmax=True))):
                rounds = [abba(i, bare, other) for i in range(LOOP_ROUNDS)]
                measured[f"bare vs {name}"] = statistics.median(r[0] for r in rounds)
                measured[name] = statistics.median(r[1] for r in rounds)
                measured[f"{name} ratio"] = statistics.median(r[1] / r[0] for r in rounds)
            # Untimed by the rates above (the clock costs a little).
            for name, run in (("bare", bare), ("argmax", partial(bare, argmax=True)), ("reply", generate)):
                with DecodeClock() as clock:
                    run()
                measured[f"{name} outside µs"] = clock.outside() * 1e6
            measured["decode µs"] = clock.inside() * 1e6  # the reply's
            return measured

        # As llama-bench warms up: a whole 512-token batch first (its graph and KV pages are set
        # up on the first one), and one generation.
        read(), generate()
        print(json.dumps("ready"), flush=True)
        for line in sys.stdin:  # each turn warms up as llama-bench's does: a whole read, one decoded token
            if line.strip() == "pp":
                read()
                print(json.dumps(read()), flush=True)
            elif line.strip() == "loop":
                print(json.dumps(loop()), flush=True)
            else:
                generate(2)
                print(json.dumps(generate()), flush=True)
    finally:
        backend.close()


def main() -> None:
    binary = os.environ.get("LLAMA_BENCH")
    models = {"SmolLM2": SMOLLM2, "tiny": build_tiny("gguf", "qwen2", QWEN_TOKENIZER)}
    if binary:
        print(f"qwencli's llama.cpp backend vs llama-bench, {THREADS} threads, flash attention off, rounds of 4 "
              "turns, ABBA, per test (medians; ratio: median of the rounds' ratios)")
        print(f"{'':30} {'llama-bench':>12} {'qwencli':>10} {'ratio':>7}  ratios seen")
    else:
        print("decode/prompt vs llama-bench: skipped (set LLAMA_BENCH=/path/to/llama-bench; see "
              "tests/bench/engine_bench.py for how to build it from the vendored llama.cpp)")
    loops = {}
    for kind, model in models.items():
        worker = Worker(model, kind)
        try:
            for test, size in (("pp", PROMPT_TOKENS), ("tg", GEN_TOKENS)) if binary else ():
                llama_bench(binary, model, test)  # llama-bench's page cache and first run: not counted
                bench: list[float] = []
                ours: list[float] = []
                started = time.monotonic()
                for i in range(MAX_ROUNDS):
                    if i >= ROUNDS and time.monotonic() - started > BUDGET:
                        break
                    theirs, mine = abba(i, partial(llama_bench, binary, model, test), partial(worker.ask, test))
                    bench.append(theirs)
                    ours.append(mine)
                ratios = [q / b for b, q in zip(bench, ours)]
                label = f"{kind} {model.name[:14]} {test}{size} ({len(ratios)})"
                print(f"{label:30} {statistics.median(bench):>8.1f} t/s {statistics.median(ours):>6.1f} t/s "
                      f"{statistics.median(ratios):>7.3f}  {min(ratios):.3f}–{max(ratios):.3f}", flush=True)
            loops[kind] = worker.ask("loop")
        finally:
            worker.close()
    print(f"tg{GEN_TOKENS} in one process, {LOOP_ROUNDS} ABBA rounds each: a qwencli reply, and that loop taking "
          "the argmax of each row (the least sampling costs), against llama-bench's loop (decode only: random ids, "
          "nothing sampled) over the same context")
    for kind, m in loops.items():
        print(f"  {kind:8} bare loop {m['bare vs reply']:7.1f} t/s   qwencli {m['reply']:7.1f} t/s   ratio "
              f"{m['reply ratio']:.3f}   bare loop {m['bare vs argmax']:7.1f} t/s   + argmax {m['argmax']:7.1f} t/s   "
              f"ratio {m['argmax ratio']:.3f}")
        print(f"  {'':8} a token outside llama_decode (median): bare loop {m['bare outside µs']:.0f} µs, + argmax "
              f"{m['argmax outside µs']:.0f} µs, qwencli {m['reply outside µs']:.0f} µs; "
              f"llama_decode {m['decode µs']:.0f} µs")

if __name__ == "__main__":
    if sys.argv[1:2] == ["--qwen"]:
        measure_qwen(Path(sys.argv[2]), sys.argv[3])
    else:
        main()
