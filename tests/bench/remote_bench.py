"""`make bench-remote`: `qwen run --host` against a local `qwen serve`, versus the same model run
in-process by `qwen run`, same run, same threads, paired rounds.

Reports generation tokens/s (target: remote/in-process ≥ 0.95) and time to first token. The server
and the client share this machine's cores, so the server's decode competes only with the client's
stream parsing — which is what the ratio measures.
"""

from __future__ import annotations

import statistics
import sys

from tests.bench.run_bench import GEN_TOKENS, MODEL, ROUNDS, STORY, qwen_run
from tests.processes import start_server, stop_server


def main() -> None:
    from qwencli.hardware import physical_cores

    threads = physical_cores()
    proc, url = start_server(str(MODEL), "--threads", str(threads))
    model = MODEL.name.removesuffix(".gguf")
    remote = ("--host", url)
    local_rates, remote_rates, local_ttft, remote_ttft = [], [], [], []
    try:
        qwen_run(STORY, 8, threads)  # warm both
        qwen_run(STORY, 8, threads, model=model, extra=remote)
        for _ in range(ROUNDS):
            here = qwen_run(STORY, GEN_TOKENS, threads)
            there = qwen_run(STORY, GEN_TOKENS, threads, model=model, extra=remote)
            assert here["text"] == there["text"], "greedy: both sides must write the same"
            local_rates.append(here["timings"]["generation_tokens_per_second"])
            remote_rates.append(there["timings"]["generation_tokens_per_second"])
            local_ttft.append(here["timings"]["first_token_seconds"])
            remote_ttft.append(there["timings"]["first_token_seconds"])
    finally:
        stop_server(proc)
    local, far = statistics.median(local_rates), statistics.median(remote_rates)
    print(f"SmolLM2-135M Q4_1, {threads} threads, {ROUNDS} paired rounds of {GEN_TOKENS} tokens (medians)")
    print(f"{'':22} {'in-process':>12} {'--host':>10} {'ratio':>7}")
    paired = statistics.median(r / h for r, h in zip(remote_rates, local_rates))  # a slow minute slows both
    print(f"{'generation':22} {local:>8.1f} t/s {far:>6.1f} t/s {paired:>7.3f}")
    print(f"{'time to first token':22} {statistics.median(local_ttft):>10.3f} s "
          f"{statistics.median(remote_ttft):>8.3f} s")


if __name__ == "__main__":
    sys.exit(main())
