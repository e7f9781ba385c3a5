"""`make bench`: `qwen run` against raw llama-cpp-python on the same GGUF and threads, same run.

Whole one-shot processes first (what a shell script running one `qwen run` per prompt feels):
wall time, CPU time and peak RSS of `qwen run MODEL PROMPT -n 1` (load + first token) and `-n 32`
against a 4-line llama-cpp-python script streaming the same chat completion, with the same
context length (8192: what qwen picks for SmolLM2). Targets: wall ≤ 1.15 (first token) and ≤ 1.10
(32 tokens), peak RSS ≤ raw + 40 MiB. Then prompt processing (a ~512-token prompt) and generation
(128 tokens, greedy) in paired rounds, target ratio ≥ 0.97; then `qwen --help`, target ≤ 0.15 s.
Numbers drift ±10 % minute to minute here, so only the ratios (paired, alternating) matter.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
# An installed qwencli has its bytecode compiled; an editable one writes it on first import, unless
# PYTHONDONTWRITEBYTECODE is set (as on our CI machines): then every start compiled ~50 qwencli
# modules from source (~50 ms), which no user pays. The warm-up round writes it.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
GEN_TOKENS = 128
STORY = "Write a very long story about a dragon who learns to fly over the sea."
LONG = "Summarize the following notes.\n\n" + " ".join(f"Note {i}: the meeting moved to room {i % 7}." for i in range(45))


def qwen_run(prompt: str, n: int, threads: int | None = None, *, model: str = str(MODEL),
             extra: tuple[str, ...] = ()) -> dict:
    """One `qwen run --json`; without `threads`, qwen's own choice (physical cores, fewer while
    the CPU is crowded), which is what people get."""
    result = subprocess.run(
        [sys.executable, "-m", "qwencli", "run", model, "--json", "--temperature", "0", "-n", str(n),
         *(("--threads", str(threads)) if threads else ()), *extra, prompt],
        capture_output=True, text=True, check=True, cwd=ROOT, stdin=subprocess.DEVNULL, env=ENV)
    return json.loads(result.stdout)


class Raw:
    """The baseline: llama-cpp-python's own token loop, no qwencli code involved. It runs in a
    fresh process per round, as `qwen run` does, so both sides start equally cold."""

    def __init__(self, threads: int):
        from llama_cpp import Llama

        from qwencli.chat import Message
        from qwencli.templates import ChatTemplate

        self.llama = Llama(str(MODEL), n_ctx=8192, n_batch=512, n_threads=threads, n_threads_batch=threads,
                           verbose=False)
        self.template = ChatTemplate(self.llama.metadata.get("tokenizer.chat_template"))
        self.Message = Message

    def run(self, prompt: str, n: int) -> tuple[int, float, int, float]:
        text = self.template.render([self.Message("user", prompt)])
        tokens = self.llama.tokenize(text.encode(), add_bos=False, special=True)
        self.llama.reset()
        started = time.perf_counter()
        first = None
        count = 0
        for _ in self.llama.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0):
            if first is None:
                first = time.perf_counter()
            count += 1
            if count >= n:
                break
        ended = time.perf_counter()
        return len(tokens), first - started, count, ended - first


def raw_run(prompt: str, n: int, threads: int) -> tuple[int, float, int, float]:
    result = subprocess.run([sys.executable, "-m", "tests.bench.run_bench", "--raw", prompt, str(n), str(threads)],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    return tuple(json.loads(result.stdout))


# The baseline one-shot: llama-cpp-python's own chat completion, streamed.
RAW_ONESHOT = """
import sys
from llama_cpp import Llama
llm = Llama(sys.argv[1], n_ctx=8192, n_threads=int(sys.argv[4]), n_threads_batch=int(sys.argv[4]), verbose=False)
messages = [{"role": "user", "content": sys.argv[2]}]
for _ in llm.create_chat_completion(messages, max_tokens=int(sys.argv[3]), temperature=0, stream=True): pass
"""


def whole_process(argv: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one process, from its own rusage."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=ROOT, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, argv
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def oneshot(threads: int) -> None:
    cases = {"first token": ("hi", 1), "32 tokens": (STORY, 32)}
    for name, (prompt, n) in cases.items():
        raw_argv = [sys.executable, "-c", RAW_ONESHOT, str(MODEL), prompt, str(n), str(threads)]
        qwen_argv = [sys.executable, "-m", "qwencli", "run", str(MODEL), "--temperature", "0", "-n", str(n),
                     "--threads", str(threads), prompt]
        whole_process(raw_argv), whole_process(qwen_argv)  # warm the page cache
        raw, ours = [], []
        for _ in range(ROUNDS):
            raw.append(whole_process(raw_argv))
            ours.append(whole_process(qwen_argv))
        walls = [q[0] / r[0] for r, q in zip(raw, ours)]
        wall = statistics.median(walls)
        cpu = statistics.median(q[1] / r[1] for r, q in zip(raw, ours))
        rss = statistics.median(q[2] - r[2] for r, q in zip(raw, ours))
        print(f"one-shot, {name:11}: wall {statistics.median(r[0] for r in raw):.3f} s raw, "
              f"{statistics.median(q[0] for q in ours):.3f} s qwen, ratio {wall:.3f} "
              f"(rounds {min(walls):.2f}–{max(walls):.2f}); "
              f"CPU ratio {cpu:.3f}; peak RSS {statistics.median(r[2] for r in raw):.0f} MiB raw, "
              f"{statistics.median(q[2] for q in ours):.0f} MiB qwen ({rss:+.0f} MiB)")


def main() -> None:
    from qwencli.hardware import physical_cores

    threads = physical_cores()
    print(f"SmolLM2-135M Q4_1, {threads} threads, {ROUNDS} paired rounds, each a fresh process")
    oneshot(threads)
    rows = {"prompt": ([], []), "generation": ([], [])}
    lowered = 0  # qwen runs that gave up threads to a crowded CPU (on a quiet machine: none)
    raw_run(STORY, 8, threads)  # warm the page cache for both sides
    qwen_run(STORY, 8)
    for _ in range(ROUNDS):
        n_prompt, prompt_s, _, _ = raw_run(LONG, 1, threads)
        record = qwen_run(LONG, 1)
        rows["prompt"][0].append(n_prompt / prompt_s)
        rows["prompt"][1].append(record["usage"]["prompt_tokens"] / record["timings"]["prompt_seconds"])
        _, _, count, gen_s = raw_run(STORY, GEN_TOKENS, threads)
        record = qwen_run(STORY, GEN_TOKENS)
        rows["generation"][0].append((count - 1) / gen_s)
        rows["generation"][1].append(record["timings"]["generation_tokens_per_second"])
        lowered += "threads" in record["timings"]
        assert record["usage"]["completion_tokens"] == count == GEN_TOKENS, "both sides must generate the same"
    print(f"SmolLM2-135M Q4_1, {threads} threads, {ROUNDS} paired rounds, each a fresh process "
          "(medians; ratio: median of the rounds' ratios)")
    print(f"{'':12} {'raw llama-cpp-python':>22} {'qwen run':>10} {'ratio':>7}")
    for name, (raw_rates, qwen_rates) in rows.items():
        r, q = statistics.median(raw_rates), statistics.median(qwen_rates)
        paired = statistics.median(b / a for a, b in zip(raw_rates, qwen_rates))  # a slow minute slows both
        print(f"{name:12} {r:>18.1f} t/s {q:>6.1f} t/s {paired:>7.3f}")
    print(f"qwen run lowered its threads in {lowered} of {ROUNDS} generation rounds")
    help_times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        # `python -m qwencli` from the checkout: the venv's `qwen` script runs whichever checkout
        # was installed last (an editable install shared between worktrees).
        subprocess.run([sys.executable, "-m", "qwencli", "--help"], capture_output=True, check=True, env=ENV, cwd=ROOT)
        help_times.append(time.perf_counter() - started)
    print(f"qwen --help  {statistics.median(help_times):.3f} s (median of {ROUNDS}; target ≤ 0.15 s)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--raw"]:
        prompt, n, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(Raw(threads).run(prompt, n)))
    else:
        main()
