"""`make bench`, `qwen eval ppl` and `qwen bench` against llama.cpp's own tools, when the binaries
built from the vendored tree are named (see engine_bench.py for the build):

    LLAMA_PERPLEXITY=/path/to/llama-perplexity  LLAMA_BENCH=/path/to/llama-bench

Each side a fresh process, alternating, same file and threads (`-t 2`), both sides' defaults
otherwise (flash attention auto, batch 2048, 4 chunks a decode). Perplexity: the final estimates
(target: equal to 4 significant digits) and the wall-time ratio llama / qwen (target ≥ 0.9).
Bench: pp512 and tg128 ratios qwen / llama-bench (target: within a few per cent). The text is
this repository's own sources, concatenated into a temporary file.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.models import ROOT, SMOLLM2

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
THREADS = os.environ.get("BENCH_THREADS", "2")
CHUNKS = os.environ.get("BENCH_CHUNKS", "8")
QWEN = [sys.executable, "-m", "qwencli"]


def corpus(folder: Path) -> Path:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "qwencli").rglob("*.py")))
    path = folder / "corpus.txt"
    path.write_text((ROOT / "README.md").read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")
    return path


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
    return time.perf_counter() - started, result.stdout + result.stderr


def final_estimate(output: str) -> str:
    found = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", output)
    assert found, output[-2000:]
    return f"{found.group(1)} +/- {found.group(2)}"


def perplexity(binary: str, text: Path) -> None:
    common = ["-c", "512", "-t", THREADS, "--chunks", CHUNKS]
    ratios, llama_s, qwen_s = [], [], []
    for _ in range(ROUNDS):
        t_llama, out_llama = timed([binary, "-m", str(SMOLLM2), "-f", str(text), *common])
        t_qwen, out_qwen = timed([*QWEN, "eval", "ppl", str(SMOLLM2), str(text), *common])
        llama, qwen = final_estimate(out_llama), final_estimate(out_qwen)
        print(f"llama-perplexity {llama} in {t_llama:.1f} s; qwen eval ppl {qwen} in {t_qwen:.1f} s")
        assert llama == qwen, (llama, qwen)
        ratios.append(t_llama / t_qwen)
        llama_s.append(t_llama)
        qwen_s.append(t_qwen)
    print(f"perplexity: same estimate; speed llama/qwen median {statistics.median(ratios):.3f} "
          f"(rounds {', '.join(f'{r:.3f}' for r in ratios)}; {statistics.median(llama_s):.1f} s vs "
          f"{statistics.median(qwen_s):.1f} s)")  # fmt: skip


def bench(binary: str) -> None:
    common = ["-m", str(SMOLLM2), "-t", THREADS, "-p", "512", "-n", "128", "-r", "1"]
    pp, tg = [], []
    for _ in range(ROUNDS):
        llama = json.loads(subprocess.run([binary, *common, "-o", "json"], capture_output=True, text=True,
                                          check=True).stdout)  # fmt: skip
        qwen = json.loads(subprocess.run([*QWEN, "bench", str(SMOLLM2), *common[2:], "--json"], capture_output=True,
                                         text=True, check=True, cwd=ROOT).stdout)  # fmt: skip
        rate = {(r["n_prompt"], r["n_gen"]): r["avg_ts"] for r in llama}
        ours = {(r["n_prompt"], r["n_gen"]): r["avg_ts"] for r in qwen}
        pp.append(ours[(512, 0)] / rate[(512, 0)])
        tg.append(ours[(0, 128)] / rate[(0, 128)])
        print(f"pp512 {ours[(512, 0)]:.1f} vs llama-bench {rate[(512, 0)]:.1f}; "
              f"tg128 {ours[(0, 128)]:.1f} vs {rate[(0, 128)]:.1f} t/s")  # fmt: skip
    print(f"bench: qwen/llama-bench median pp512 {statistics.median(pp):.3f}, tg128 {statistics.median(tg):.3f}")


def main() -> None:
    ppl_binary, bench_binary = os.environ.get("LLAMA_PERPLEXITY"), os.environ.get("LLAMA_BENCH")
    if not ppl_binary and not bench_binary:
        print("eval_bench: set LLAMA_PERPLEXITY and/or LLAMA_BENCH to compare with llama.cpp's tools; skipped")
        return
    with tempfile.TemporaryDirectory() as folder:
        if ppl_binary:
            perplexity(ppl_binary, corpus(Path(folder)))
    if bench_binary:
        bench(bench_binary)


if __name__ == "__main__":
    main()
