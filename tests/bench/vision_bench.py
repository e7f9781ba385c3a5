"""`make bench` (vision part): time to first token with one image on the tiny Qwen3-VL
(tests/fixtures/tiny_vision.py), qwencli's llama.cpp backend against llama-cpp-python's own
`MTMDChatHandler` on the same GGUF and projector, in paired rounds.

Both sides start from the same data: URL (what a server request carries), so qwencli's time
includes its Pillow check and decode and the handler's its base64 and stb_image decode; both
load once (2 threads, flash attention off, same context), answer one warm-up request, then
alternate which goes first. A side's time is the wall time of a one-token greedy reply. The
handler clears its KV cache on every call; qwencli keeps the few text tokens before the image.
Reported: medians and the median of the paired ratios qwencli / handler. Target: ≤ 1.1.

Then the second turn of the same chat (the image, a one-token reply, a follow-up question): the
handler reads it all again, image included; qwencli keeps the first turn's image in its cache
(llama_vision.py's layout), so its time is the follow-up's text alone.
"""

from __future__ import annotations

import base64
import io
import os
import statistics
import time

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
CTX = 4096
#: 448×336: 28×21 patches, 14×10 (+ rounding) image tokens after the 2×2 merge.
SIZE = (448, 336)


def photo_url(seed: int) -> str:
    from PIL import Image

    image = Image.effect_mandelbrot(SIZE, (-2.0 + seed * 0.01, -1.2, 1.0, 1.2), 64).convert("RGB")
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def main() -> None:
    import llama_cpp
    from llama_cpp.llama_chat_format import MTMDChatHandler

    from qwencli.backends.base import LoadOptions
    from qwencli.backends.llamacpp import LlamaCppBackend
    from qwencli.chat import GenerationOptions, Message, collect
    from qwencli.images import image_from_data_url
    from tests.models import QWEN_TOKENIZER, build_vision

    model, projector = build_vision("gguf", QWEN_TOKENIZER), build_vision("mmproj", QWEN_TOKENIZER)
    ours = LlamaCppBackend(model, LoadOptions(context_length=CTX, threads=THREADS), projector=projector)
    handler = MTMDChatHandler(str(projector), verbose=False)
    theirs = llama_cpp.Llama(
        str(model), chat_handler=handler, n_ctx=CTX, n_threads=THREADS, n_threads_batch=THREADS,
        flash_attn=False, verbose=False,
    )
    options = GenerationOptions(temperature=0, max_tokens=1)
    question = "What is in this picture?"

    follow_up = "And what colour is it?"

    def qwen(url: str, second: str | None = None) -> tuple[float, int]:
        started = time.perf_counter()
        messages = [Message("user", question, images=(image_from_data_url(url),))]
        if second is not None:
            messages += [Message("assistant", second), Message("user", follow_up)]
        reply = collect(ours.chat(messages, options))
        return time.perf_counter() - started, reply.usage.prompt_tokens

    def handler_side(url: str, second: str | None = None) -> float:
        started = time.perf_counter()
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                 {"type": "text", "text": question}]}]
        if second is not None:
            messages += [{"role": "assistant", "content": second}, {"role": "user", "content": follow_up}]
        theirs.create_chat_completion(messages=messages, max_tokens=1, temperature=0)
        return time.perf_counter() - started

    try:
        warm = photo_url(0)
        qwen(warm)
        handler_side(warm)
        q_times, h_times, ratios = [], [], []
        q2_times, h2_times, ratios2 = [], [], []
        n_prompt = n_prompt2 = 0
        for i in range(ROUNDS):
            url = photo_url(i + 1)  # a new image each round: nothing cached by content
            # Each side's second turn follows its own first, so qwencli's cache holds that image.
            if i % 2:
                h = handler_side(url)
                h2 = handler_side(url, "Yes.")
                q, n_prompt = qwen(url)
                q2, n_prompt2 = qwen(url, "Yes.")
            else:
                q, n_prompt = qwen(url)
                q2, n_prompt2 = qwen(url, "Yes.")
                h = handler_side(url)
                h2 = handler_side(url, "Yes.")
            q_times.append(q)
            h_times.append(h)
            ratios.append(q / h)
            q2_times.append(q2)
            h2_times.append(h2)
            ratios2.append(q2 / h2)
        print(
            f"vision TTFT, one {SIZE[0]}×{SIZE[1]} image ({n_prompt} prompt tokens), {ROUNDS} paired rounds, "
            f"{THREADS} threads: qwencli {statistics.median(q_times) * 1000:.1f} ms, "
            f"MTMDChatHandler {statistics.median(h_times) * 1000:.1f} ms, "
            f"ratio {statistics.median(ratios):.3f} (rounds {min(ratios):.2f}–{max(ratios):.2f}; target ≤ 1.1)"
        )
        print(
            f"vision second turn, the same image ({n_prompt2} prompt tokens): "
            f"qwencli {statistics.median(q2_times) * 1000:.1f} ms, "
            f"MTMDChatHandler {statistics.median(h2_times) * 1000:.1f} ms, "
            f"ratio {statistics.median(ratios2):.3f} (rounds {min(ratios2):.2f}–{max(ratios2):.2f})"
        )
    finally:
        ours.close()
        theirs.close()


if __name__ == "__main__":
    main()
