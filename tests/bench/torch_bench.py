"""`make bench` (torch part): generation tokens/s of our torch backend against a plain
`model.generate` on the same tiny Qwen2 folder, same device (CPU), same threads, same run.

Both decode the same number of tokens greedily from the same prompt ("Loop" repeats forever);
rounds alternate between the two and medians are compared. Target: ratio ≥ 1.0 (streaming,
detokenizing and cancellation checks must cost nothing against transformers' own loop).
"""

from __future__ import annotations

import os
import statistics
import time

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
GEN_TOKENS = int(os.environ.get("BENCH_TOKENS", "256"))
PROMPT = "Loop"


def main() -> None:
    import torch

    from qwencli.backends.base import LoadOptions
    from qwencli.backends.torch_backend import TorchBackend
    from qwencli.chat import GenerationOptions, collect
    from qwencli.hardware import physical_cores
    from tests.models import QWEN_TOKENIZER, build_tiny

    folder = build_tiny("hf", "qwen2", QWEN_TOKENIZER)
    threads = physical_cores()
    backend = TorchBackend(folder, LoadOptions(device="cpu", threads=threads))
    model, tokenizer = backend.model, backend.tokenizer  # the same weights for the baseline
    options = GenerationOptions(temperature=0, repeat_penalty=1.0, max_tokens=GEN_TOKENS)
    ids = torch.tensor([tokenizer.encode(PROMPT, add_special_tokens=False)])

    def ours() -> float:
        backend._cache, backend._cached_ids = None, []  # no cache reuse between rounds: equal footing
        done = collect(backend.complete(PROMPT, options))
        assert done.usage.completion_tokens == GEN_TOKENS, done.usage
        return (GEN_TOKENS - 1) / done.timings.generation_seconds

    # Greedy without the repo's sampling settings (its repetition penalty would cost generate time).
    plain_greedy = dict(do_sample=False, repetition_penalty=1.0, temperature=None, top_p=None, top_k=None)

    def plain() -> float:
        def run() -> float:
            with torch.inference_mode():
                # The first token comes out of the prompt pass, as in ours: time the rest.
                started = time.perf_counter()
                first = model.generate(ids, max_new_tokens=1, **plain_greedy)
                prompt_time = time.perf_counter() - started
                started = time.perf_counter()
                out = model.generate(ids, max_new_tokens=GEN_TOKENS, min_new_tokens=GEN_TOKENS, **plain_greedy)
                total = time.perf_counter() - started
            assert out.shape[1] - ids.shape[1] == GEN_TOKENS and first.shape[1] == ids.shape[1] + 1
            return (GEN_TOKENS - 1) / max(total - prompt_time, 1e-9)

        return backend._engine.call(run)  # same thread (and torch thread settings) as ours

    ours(), plain()  # warm-up
    rounds_ours, rounds_plain = [], []
    for _ in range(ROUNDS):
        rounds_ours.append(ours())
        rounds_plain.append(plain())
    a, b = statistics.median(rounds_ours), statistics.median(rounds_plain)
    print(f"torch backend (CPU, {threads} threads, tiny Qwen2, {GEN_TOKENS} tokens, {ROUNDS} rounds)")
    print(f"  generation  qwencli {a:8.1f} tok/s   model.generate {b:8.1f} tok/s   ratio {a / b:.2f}  (target ≥ 1.00)")
    backend.close()


if __name__ == "__main__":
    main()
