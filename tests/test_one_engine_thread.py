"""Every llama.cpp context of a `qwen serve` process computes on one thread (a second thread's
OpenMP team would slow the chat load's decode for good, step_engine.py): the chat, embedding and
rerank loads of a real server, their `llama_decode` calls recorded at the C binding; and an
embeddings request sent while a chat reply streams is answered between its tokens, without
waiting for the reply and without changing it."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.models import QWEN_TOKENIZER, SMOLLM2, build_reranker, require
from tests.serving import serving

pytestmark = pytest.mark.slow

TEXTS = ["The capital of France is Paris.", "Bananas are yellow."]
#: A long greedy reply: the stream runs well after an embeddings request sent at its fifth token.
COUNTING = {
    "model": "smollm2",
    "messages": [{"role": "user", "content": "Write a very long story about a dragon who learns to fly over the sea."}],
    "temperature": 0,
    "max_tokens": 160,
    "stream": True,
}


@pytest.fixture
def decode_threads(monkeypatch):
    """The thread of every `llama_decode` call, qwencli's (the package's name) and llama-cpp-python's
    (`_internals`, the binding's name) alike."""
    import llama_cpp
    import llama_cpp.llama_cpp as binding

    seen: list[int] = []
    real = binding.llama_decode

    def recording(ctx, batch):
        seen.append(threading.get_ident())
        return real(ctx, batch)

    monkeypatch.setattr(binding, "llama_decode", recording)
    monkeypatch.setattr(llama_cpp, "llama_decode", recording)
    return seen


def test_chat_embeddings_and_rerank_compute_on_one_thread(decode_threads):
    reranker = build_reranker(require(QWEN_TOKENIZER / "tokenizer.json").parent)
    with serving({"smollm2": require(SMOLLM2), "reranker": reranker}) as server:
        chat = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
        replies = [
            httpx.post(server.base + "/v1/chat/completions", json=chat, timeout=60),
            httpx.post(server.base + "/v1/embeddings", json={"model": "smollm2", "input": TEXTS}, timeout=60),
            httpx.post(server.base + "/v1/rerank", json={"model": "reranker", "query": "q", "documents": TEXTS},
                       timeout=60),
            httpx.post(server.base + "/v1/chat/completions", json=chat, timeout=60),
        ]
        loaded = {m.info.backend for m in server.registry.loaded()}
    assert [r.status_code for r in replies] == [200] * 4, [r.text for r in replies]
    assert {"llama.cpp", "llama.cpp (embeddings)"} <= loaded  # three loads: chat, embeddings, rerank
    assert len(decode_threads) >= 2 + 2 + 8  # the embeddings, the scores and the chat tokens
    assert len(set(decode_threads)) == 1
    assert threading.get_ident() not in decode_threads


def stream_lines(base: str, body: dict, at_token: int | None = None, side=None) -> tuple[str, list[float]]:
    """The streamed reply's text and each content delta's arrival time; `side()` is started on a
    thread when the `at_token`-th delta arrives."""
    text, arrivals = [], []
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                text.append(event["choices"][0]["delta"]["content"])
                arrivals.append(time.perf_counter())
                if len(arrivals) == at_token and side is not None:
                    threading.Thread(target=side, daemon=True).start()
            if event["choices"] and event["choices"][0].get("finish_reason"):
                text.append(f"[{event['choices'][0]['finish_reason']}]")
    return "".join(text), arrivals


def test_an_embeddings_request_during_a_streaming_reply_is_answered_between_its_tokens():
    with serving({"smollm2": require(SMOLLM2)}) as server:
        # Loaded first, so what the side request waits for is its turn on the engine, not a load.
        httpx.post(server.base + "/v1/embeddings", json={"model": "smollm2", "input": "x"}, timeout=60)
        stream_lines(server.base, COUNTING)  # from here on each reply reads its prompt from the cache alike
        alone, _ = stream_lines(server.base, COUNTING)
        answered: dict = {}

        def embed() -> None:
            reply = httpx.post(server.base + "/v1/embeddings", json={"model": "smollm2", "input": TEXTS}, timeout=60)
            answered["status"], answered["vectors"] = reply.status_code, len(reply.json()["data"])
            answered["at"] = time.perf_counter()

        text, arrivals = stream_lines(server.base, COUNTING, at_token=5, side=embed)
    assert text == alone and text.endswith("[length]")  # the same reply, to its budget
    assert answered.get("status") == 200 and answered["vectors"] == 2
    later = [t for t in arrivals if t > answered["at"]]
    assert len(later) >= 20, f"the embeddings came {len(later)} deltas before the reply's end"
