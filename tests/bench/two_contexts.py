"""Two llama.cpp contexts in one process, over the C API alone: does a compute on a second OS
thread slow the first thread's decode for good (libgomp's throttled barriers)? What made
`step_engine.llama_engine` one thread per process.

    python -m tests.bench.two_contexts threads   # context B computes on a thread of its own
    python -m tests.bench.two_contexts same      # context B computes on thread A

Each prints thread A's decode t/s (5 runs of 128 tokens) before and after B computed; B's thread
lives on afterwards, as a thread-pool worker does. Measured on 2 cores: threads 123 → 71 t/s,
same 126 → 111 (and 113 → 79 against 125 → 120 in a second pair)."""

import queue
import statistics
import sys
import threading
import time

import llama_cpp

from tests.bench.run_bench import MODEL

THREADS = 2
N = 128


def make_ctx(model, embed: bool = False):
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = 2048, 512, 512
    params.n_threads = params.n_threads_batch = THREADS
    if embed:
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    return llama_cpp.llama_init_from_model(model, params)


def decode(batch, ctx, tokens: list[int], start: int, logits_all: bool = False) -> None:
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = start + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = logits_all or i == len(tokens) - 1
    batch.n_tokens = len(tokens)
    assert llama_cpp.llama_decode(ctx, batch) == 0


def tokens_per_second(batch, ctx) -> float:
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    decode(batch, ctx, list(range(100, 130)), 0)
    started = time.perf_counter()
    for i in range(N):
        decode(batch, ctx, [200 + i % 50], 30 + i)
    return N / (time.perf_counter() - started)


def embed_work(batch, ctx) -> None:
    for _ in range(5):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        decode(batch, ctx, list(range(300, 500)), 0, logits_all=True)


def main(mode: str) -> None:
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_load_model_from_file(str(MODEL).encode(), llama_cpp.llama_model_default_params())
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    jobs: queue.SimpleQueue = queue.SimpleQueue()

    def thread_a() -> None:
        while True:
            fn, box, done = jobs.get()
            box.append(fn())
            done.set()

    def on_a(fn):
        box: list = []
        done = threading.Event()
        jobs.put((fn, box, done))
        done.wait()
        return box[0]

    threading.Thread(target=thread_a, daemon=True).start()
    chat = on_a(lambda: make_ctx(model))
    for _ in range(2):
        on_a(lambda: tokens_per_second(batch, chat))  # warm up
    before = [on_a(lambda: tokens_per_second(batch, chat)) for _ in range(5)]
    if mode == "threads":
        computed = threading.Event()

        def thread_b() -> None:  # lives on, as a thread-pool worker does, and its OpenMP team with it
            embed_work(batch, make_ctx(model, embed=True))
            computed.set()
            threading.Event().wait()

        threading.Thread(target=thread_b, daemon=True).start()
        computed.wait()
    else:
        on_a(lambda: embed_work(batch, make_ctx(model, embed=True)))
    after = [on_a(lambda: tokens_per_second(batch, chat)) for _ in range(5)]
    print(f"{mode:8} before {statistics.median(before):6.1f} t/s {[round(x) for x in before]}  "
          f"after {statistics.median(after):6.1f} t/s {[round(x) for x in after]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "threads")
