"""`make bench-pull`: pulling and resolving, each against its baseline in the same run.

1. Pull throughput of the 98 MB SmolLM2 GGUF from the loopback hub: `qwen`'s pull (resume file,
   sha256 on a second thread) against plain `huggingface_hub.hf_hub_download`, each in a fresh
   process with an empty cache, timed around the call only. Target: ratio ≥ 0.95.
2. `qwen run NAME -n 1 "hi"` on the cached model against `qwen run PATH -n 1 "hi"`: wall time to
   the first (only) token, whole process. Target: ratio ≤ 1.05 (resolving a name costs nothing).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.run_bench import MODEL, ROOT, ROUNDS
from tests.fixtures.hub import HubServer

REPO = "bench/SmolLM2-135M-Instruct-GGUF"
FILE = MODEL.name

HF_DOWNLOAD = """
import sys, time
from huggingface_hub import hf_hub_download
started = time.perf_counter()
hf_hub_download(sys.argv[1], sys.argv[2])
print(time.perf_counter() - started)
"""
# qwencli imports huggingface_hub lazily, inside the pull; import it first, as the baseline does,
# so both timers hold the transfer and its checks, not module loading (about 0.27 s here).
QWEN_PULL = """
import sys, time
import huggingface_hub.hf_api, huggingface_hub.file_download
from qwencli.models.names import parse
from qwencli.models.progress import PullProgress
from qwencli.models.pull import pull
ref = parse(sys.argv[1] + ":" + sys.argv[2])
started = time.perf_counter()
pull(ref, progress=PullProgress())
print(time.perf_counter() - started)
"""


def timed_script(script: str, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", script, REPO, _quant_or_file(script)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def _quant_or_file(script: str) -> str:
    return "q4_1" if script is QWEN_PULL else FILE


def fresh_env(hub: HubServer, home: Path) -> dict:
    return {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "QWEN_HOME": str(home / "qwen"),
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def run_wall(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qwencli", "run", *args, "--json", "-n", "1", "--temperature", "0", "hi"],
                   env=env, cwd=ROOT, capture_output=True, check=True, timeout=300, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    size = MODEL.stat().st_size
    with HubServer() as hub, tempfile.TemporaryDirectory() as tmp:
        hub.add_repo(REPO, {FILE: MODEL})
        hub.repos[REPO].files[FILE].sha256  # noqa: B018 - hash once, before timing
        hf_times, qwen_times = [], []
        for n in range(ROUNDS):
            hf_times.append(timed_script(HF_DOWNLOAD, fresh_env(hub, Path(tmp) / f"hf{n}")))
            qwen_times.append(timed_script(QWEN_PULL, fresh_env(hub, Path(tmp) / f"qwen{n}")))
        hf, qwen = statistics.median(hf_times), statistics.median(qwen_times)
        print(f"pull of {size / 1e6:.1f} MB from a loopback hub, {ROUNDS} rounds, fresh process and cache (medians)")
        print(f"  hf_hub_download {size / hf / 1e6:7.1f} MB/s   qwen pull {size / qwen / 1e6:7.1f} MB/s"
              f"   ratio {hf / qwen:.3f}  (target ≥ 0.95)")

        env = fresh_env(hub, Path(tmp) / "qwen0")  # the cache the first qwen round filled
        name = f"{REPO}:q4_1"
        run_wall([name], env), run_wall([str(MODEL)], env)  # warm the page cache
        by_name, by_path = [], []
        for _ in range(ROUNDS):
            by_name.append(run_wall([name], env))
            by_path.append(run_wall([str(MODEL)], env))
        hub.reset_log()
        run_wall([name], env)
        assert hub.requests() == 0, "a cached model must start without the network"
        a, b = statistics.median(by_name), statistics.median(by_path)
        print(f"qwen run -n 1 to the first token, whole process (medians of {ROUNDS})")
        print(f"  by name {a:.3f} s   by path {b:.3f} s   ratio {a / b:.3f}  (target ≤ 1.05; zero hub requests)")


if __name__ == "__main__":
    main()
