"""`make bench-serve`: `qwen serve` against raw llama-cpp-python on the same GGUF and threads.

1. Generation tokens/s of one streaming client through the server (time from its first to its
   last token, as the client sees it) against llama-cpp-python's own token loop in this process,
   in paired rounds; target ratio ≥ 0.95.
2. Embeddings: texts/s of one POST /v1/embeddings of EMBED_TEXTS texts through the server (the
   client's wall time, JSON floats included) against llama-cpp-python's own
   `Llama(embedding=True).embed()` of the same texts on the same file, pooling and threads, in
   paired rounds; target ratio ≥ 0.9. Then the 1-client chat rounds again: after the embedding
   load has computed, the chat load's tokens/s over the rounds before it; target ≥ 0.95 (all
   llama.cpp work of the server on one thread, step_engine.py).
3. Aggregate tokens/s with 1, 4 and 8 concurrent streaming clients, for `--parallel 1` (a FIFO,
   one request at a time) and `--parallel 4` (batched decoding), and /health latency meanwhile.
3. With `LLAMA_SERVER=/path/to/llama-server` (built from the vendored llama.cpp, as engine_bench.py
   builds llama-bench, with `-DLLAMA_BUILD_SERVER=ON`): 4 streaming clients against
   `qwen serve --parallel 4` and against `llama-server -np 4` on the same file, threads and context
   per slot, in rounds of four loads, ABBA (BAAB in odd rounds); target ratio ≥ 1.0.

Bounded: BENCH_ROUNDS rounds (default 5) of GEN_TOKENS tokens; every wait has a timeout.
BENCH_THREADS (default: the physical cores) sets both sides' threads: on a machine other programs
keep busy, llama.cpp's spinning barriers make 2 threads on 2 cores seconds per token, so use 1.
Numbers drift ±10 % minute to minute on shared machines, so only same-run ratios mean much, and
the ratio is the median of each round's served/raw (a slow minute slows both sides of a round).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import time

import httpx

from tests.bench.pairing import abba
from tests.bench.run_bench import MODEL, STORY
from tests.processes import start_server, stop_server

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
GEN_TOKENS = 128
CLIENTS = (1, 4, 8)
TIMEOUT = 300.0
#: Texts of one embeddings request: sentences of 10 to 40 words, as a RAG indexer sends chunks.
EMBED_TEXTS = [" ".join([f"Passage {i}:"] + STORY.split() * (1 + i % 3)) for i in range(16)]


class Server:
    """`qwen serve` on the benchmark model, in its own process (tests/processes.py)."""

    def __init__(self, threads: int, parallel: int):
        self.proc, self.base = start_server(str(MODEL), "--threads", str(threads), "--parallel", str(parallel),
                                            "--ctx", "2048", "--keep-alive", "-1")

    def stop(self) -> None:
        stop_server(self.proc)


async def stream_one(http: httpx.AsyncClient, base: str) -> tuple[int, float, float]:
    """(tokens, time of first token, time of last token) of one streaming request.

    Lines are only timestamped while the stream runs and parsed after it ends: the client shares
    the two cores with the server, and what is measured is the server."""
    body = {"model": MODEL.stem, "messages": [{"role": "user", "content": STORY}], "temperature": 0,
            "max_tokens": GEN_TOKENS, "stream": True, "stream_options": {"include_usage": True}}
    arrivals: list[tuple[float, str]] = []
    async with http.stream("POST", base + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            arrivals.append((time.perf_counter(), line))
    first = last = 0.0
    tokens = deltas = 0
    for at, line in arrivals:
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[6:])
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
        if event.get("choices") and event["choices"][0]["delta"].get("content"):
            deltas += 1
            last = at
            first = first or at
    return tokens or deltas, first, last


async def health_probe(base: str, stop: asyncio.Event, out: list[float]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        while not stop.is_set():
            started = time.perf_counter()
            (await http.get(base + "/health")).raise_for_status()
            out.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)


async def clients(base: str, n: int) -> tuple[float, list[float]]:
    """Aggregate generated tokens/s of `n` concurrent streams, and /health latencies meanwhile."""
    stop = asyncio.Event()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=n + 1)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as http:
        prober = asyncio.create_task(health_probe(base, stop, latencies))
        started = time.perf_counter()
        results = await asyncio.wait_for(asyncio.gather(*(stream_one(http, base) for _ in range(n))), TIMEOUT)
        elapsed = time.perf_counter() - started
        stop.set()
        await prober
    return sum(r[0] for r in results) / elapsed, latencies


def raw_generation(llama, template, Message) -> float:
    text = template.render([Message("user", STORY)])
    tokens = llama.tokenize(text.encode(), add_bos=False, special=True)
    llama.reset()
    first = None
    count = 0
    for _ in llama.generate(tokens, temp=0.0, repeat_penalty=1.0):
        if first is None:
            first = time.perf_counter()
        count += 1
        if count >= GEN_TOKENS:
            break
    return (count - 1) / (time.perf_counter() - first)


def main() -> None:
    from llama_cpp import Llama

    from qwencli.chat import Message
    from qwencli.hardware import physical_cores
    from qwencli.templates import ChatTemplate

    threads = int(os.environ.get("BENCH_THREADS") or physical_cores())  # 1 on a machine others keep busy
    llama = Llama(str(MODEL), n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    template = ChatTemplate(llama.metadata.get("tokenizer.chat_template"))
    print(f"SmolLM2-135M Q4_1, {threads} threads, {GEN_TOKENS} tokens a request, {ROUNDS} rounds (medians)")

    raw_rates, served_rates = [], []
    server = Server(threads, parallel=1)
    try:
        asyncio.run(clients(server.base, 1))  # warm up
        for _ in range(ROUNDS):
            raw_rates.append(raw_generation(llama, template, Message))
            tokens, first, last = asyncio.run(_one(server.base))
            served_rates.append((tokens - 1) / (last - first))
        raw, served = statistics.median(raw_rates), statistics.median(served_rates)
        paired = statistics.median(s / r for s, r in zip(served_rates, raw_rates))
        print(f"{'1 client':24} raw {raw:6.1f} t/s   served {served:6.1f} t/s   ratio {paired:.3f}"
              " (median of the paired rounds' ratios)")
        llama.close()  # leave the cores to the server from here on
        table = {1: _aggregate(server.base)}
        # After the chat lines: the embedding load is a second llama.cpp context. Had it computed
        # on a thread of its own, libgomp would have more threads than cores and throttle its
        # barriers from then on (chat decode ~30 % slower on 2 cores); the line after it checks.
        embed_raw, embed_served, embed_paired = _embeddings(server.base, threads)
        print(f"{'embeddings':24} raw {embed_raw:6.1f} texts/s   served {embed_served:6.1f} texts/s   ratio "
              f"{embed_paired:.3f} ({len(EMBED_TEXTS)} texts a request; median of the paired rounds' ratios)")
        after_rates = []
        for _ in range(ROUNDS):
            tokens, first, last = asyncio.run(_one(server.base))
            after_rates.append((tokens - 1) / (last - first))
        after = statistics.median(after_rates)
        print(f"{'chat after embeddings':24} before {served:6.1f} t/s   after {after:6.1f} t/s   ratio "
              f"{after / served:.3f} (target >= 0.95; rounds {min(after_rates):.0f}–{max(after_rates):.0f} t/s, "
              f"before {min(served_rates):.0f}–{max(served_rates):.0f})")
    finally:
        server.stop()
    server = Server(threads, parallel=4)  # batched decoding: 4 sequences per llama_decode
    try:
        table[4] = _aggregate(server.base)
        against_llama_server(server.base, threads)
    finally:
        server.stop()
    print(f"{'aggregate t/s':24} " + "".join(f"{n:>3} client{'s' if n > 1 else ' '}     " for n in CLIENTS))
    for parallel, rows in table.items():
        print(f"{f'--parallel {parallel}':24} " + "".join(f"{rows[n][0]:>10.1f}     " for n in CLIENTS))
    for parallel, rows in table.items():
        latencies = [v for n in CLIENTS for v in rows[n][1]]
        print(f"/health under load, --parallel {parallel}: median {statistics.median(latencies) * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms ({len(latencies)} probes)")
    engine_relay()


class LlamaServer:
    """llama.cpp's own server on the same file: 4 slots of 2048 tokens (`-c` is their total), flash
    attention off (as qwencli loads), on a free loopback port."""

    def __init__(self, binary: str, threads: int, slots: int = 4):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [binary, "-m", str(MODEL), "-t", str(threads), "-tb", str(threads), "-np", str(slots),
             "-c", str(2048 * slots), "-fa", "off", "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama-server did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def against_llama_server(qwen_base: str, threads: int) -> None:
    binary = os.environ.get("LLAMA_SERVER")
    if not binary:
        print("4 clients vs llama-server -np 4: skipped (set LLAMA_SERVER=/path/to/llama-server)")
        return
    other = LlamaServer(binary, threads)
    try:
        asyncio.run(clients(other.base, 4))  # warm up both
        asyncio.run(clients(qwen_base, 4))
        ours, theirs = [], []
        for i in range(ROUNDS):
            rate_theirs, rate_ours = abba(i, lambda: asyncio.run(clients(other.base, 4))[0],
                                          lambda: asyncio.run(clients(qwen_base, 4))[0])
            theirs.append(rate_theirs)
            ours.append(rate_ours)
    finally:
        other.stop()
    ratios = [q / t for q, t in zip(ours, theirs)]
    print(f"{'4 clients, aggregate':24} llama-server -np 4 {statistics.median(theirs):6.1f} t/s   "
          f"qwen serve --parallel 4 {statistics.median(ours):6.1f} t/s   ratio {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.2f}–{max(ratios):.2f})")
def _embeddings(base: str, threads: int) -> tuple[float, float, float]:
    """(raw texts/s, served texts/s, median paired ratio): the server's embedding load of the
    benchmark file against llama-cpp-python's own embed() with the pooling the server uses."""
    import llama_cpp

    raw_llama = llama_cpp.Llama(str(MODEL), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                                n_ctx=2048, n_batch=2048, n_ubatch=2048, n_threads=threads,
                                n_threads_batch=threads, verbose=False)
    body = {"model": MODEL.stem, "input": EMBED_TEXTS, "encoding_format": "float"}
    raw_rates, served_rates = [], []
    try:
        with httpx.Client(timeout=TIMEOUT) as http:
            http.post(base + "/v1/embeddings", json=body).raise_for_status()  # loads the embedding context
            raw_llama.embed(EMBED_TEXTS)
            for _ in range(ROUNDS):
                started = time.perf_counter()
                raw_llama.embed(EMBED_TEXTS)
                raw_rates.append(len(EMBED_TEXTS) / (time.perf_counter() - started))
                started = time.perf_counter()
                reply = http.post(base + "/v1/embeddings", json=body)
                reply.raise_for_status()
                served_rates.append(len(EMBED_TEXTS) / (time.perf_counter() - started))
                assert len(reply.json()["data"]) == len(EMBED_TEXTS)
    finally:
        raw_llama.close()
    paired = statistics.median(s / r for s, r in zip(served_rates, raw_rates))
    return statistics.median(raw_rates), statistics.median(served_rates), paired


async def _one(base: str) -> tuple[int, float, float]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        return await stream_one(http, base)


def _aggregate(base: str) -> dict[int, tuple[float, list[float]]]:
    out = {}
    for n in CLIENTS:
        runs = [asyncio.run(clients(base, n)) for _ in range(max(ROUNDS - 1, 1))]
        out[n] = (statistics.median(r[0] for r in runs), [v for r in runs for v in r[1]])
    return out


def engine_relay(tokens: int = 128, token_delay: float = 0.005) -> float:
    """`qwen serve --engine vllm` (its relay in front of tests/fixtures/fake_engine.py, which streams a token
    every `token_delay` s) against the same fake engine asked directly, one streaming client, paired rounds:
    the per-token latency ratio direct/relayed (target ≥ 0.97) and what the relay adds to the first token."""
    import signal
    import sys
    import tempfile
    from pathlib import Path

    from tests.fixtures import fake_engine
    from tests.processes import QWEN

    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    bin_dir, _ = fake_engine.install(tmp)
    record = tmp / "record.json"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_ENGINE_RECORD": str(record),
           "FAKE_ENGINE_TOKENS": str(tokens), "FAKE_ENGINE_TOKEN_DELAY": str(token_delay)}
    proc = subprocess.Popen([*QWEN, "serve", "qwen2.5-0.5b", "--engine", "vllm", "--gpus", "1", "--gpu-memory",
                             "24GB", "--port", "0", "--log-file", str(tmp / "engine.log")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        relay = proc.stdout.readline().strip().removesuffix("/v1")
        if not relay.startswith("http"):
            sys.exit("qwen serve --engine did not start")
        argv = json.loads(record.read_text())["argv"]
        direct = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
        key = json.loads(record.read_text())["env"]["VLLM_API_KEY"]

        def one(base: str, headers: dict) -> tuple[float, float]:
            body = {"model": "qwen2.5-0.5b", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            start = time.perf_counter()
            stamps = []
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=headers,
                              timeout=TIMEOUT) as response:
                for line in response.iter_lines():
                    if '"content": "w' in line:
                        stamps.append(time.perf_counter())
            return (stamps[-1] - stamps[0]) / (len(stamps) - 1), stamps[0] - start

        auth = {"Authorization": f"Bearer {key}"}
        one(relay, {}), one(direct, auth)  # warm up
        pairs = [(one(direct, auth), one(relay, {})) for _ in range(max(ROUNDS, 5))]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    ratio = statistics.median(d[0] / r[0] for d, r in pairs)
    first = statistics.median(r[1] - d[1] for d, r in pairs)
    print(f"{'engine relay':24} per-token {statistics.median(r[0] for _, r in pairs) * 1000:.2f} ms relayed vs "
          f"{statistics.median(d[0] for d, _ in pairs) * 1000:.2f} ms direct: ratio {ratio:.3f} (target >= 0.97); "
          f"first token +{first * 1000:.1f} ms")
    return ratio


if __name__ == "__main__":
    main()
