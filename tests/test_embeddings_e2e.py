"""Embeddings through a real `qwen serve` app with the official `openai` and `ollama` clients: SmolLM2
loaded for embeddings apart from its chat load, compared with llama-cpp-python's own
`Llama(embedding=True).embed()` of the same file and text."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import openai
import pytest

from tests.greedy import PARIS
from tests.models import SMOLLM2, require
from tests.serving import serving

ollama = pytest.importorskip("ollama")
pytestmark = pytest.mark.slow

TEXTS = ["The capital of France is Paris.", "Bananas are yellow."]


def cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def server():
    with serving({"smollm2": require(SMOLLM2)}) as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=60)


def raw_embedding(text: str) -> list[float]:
    import llama_cpp

    llama = llama_cpp.Llama(model_path=str(SMOLLM2), embedding=True, n_ctx=2048, n_batch=2048, n_ubatch=2048,
                            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, verbose=False)
    try:
        return llama.embed(text, normalize=False)
    finally:
        llama.close()


def test_openai_embeddings_float_and_base64_equal_llama_cpp_pythons_own(client):
    floats = client.embeddings.create(model="smollm2", input=TEXTS, encoding_format="float")
    b64 = client.embeddings.create(model="smollm2", input=TEXTS, encoding_format="base64")
    assert [d.index for d in floats.data] == [0, 1] and floats.usage.prompt_tokens > 8
    for a, b in zip(floats.data, b64.data):
        raw = base64.b64decode(b.embedding)  # asked for explicitly, the SDK hands the text over as is
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert len(a.embedding) == len(decoded) == 576
        assert max(abs(x - y) for x, y in zip(a.embedding, decoded)) < 1e-6
    default = client.embeddings.create(model="smollm2", input=TEXTS)  # the SDK asks for base64 and decodes it
    assert max(abs(x - y) for x, y in zip(default.data[1].embedding, floats.data[1].embedding)) < 1e-6
    again = client.embeddings.create(model="smollm2", input=TEXTS[0])
    assert cosine(again.data[0].embedding, floats.data[0].embedding) > 0.99999
    assert cosine(floats.data[0].embedding, floats.data[1].embedding) < 0.999
    assert cosine(floats.data[0].embedding, raw_embedding(TEXTS[0])) >= 0.9999
    short = client.embeddings.create(model="smollm2", input=TEXTS[0], dimensions=64)
    assert len(short.data[0].embedding) == 64
    assert abs(sum(x * x for x in short.data[0].embedding) - 1) < 1e-4


def test_ollama_embed_and_the_legacy_embeddings(server):
    client = ollama.Client(host=server.base)
    reply = client.embed(model="smollm2", input=TEXTS)
    assert len(reply.embeddings) == 2 and reply.prompt_eval_count > 8
    legacy = client.embeddings(model="smollm2", prompt=TEXTS[0])
    assert cosine(legacy.embedding, reply.embeddings[0]) > 0.99999


def test_the_embedding_load_is_apart_from_the_chat_load(client, server):
    client.embeddings.create(model="smollm2", input="hi")
    chat = client.chat.completions.create(model="smollm2", messages=PARIS.messages(), temperature=0, max_tokens=32)
    assert chat.choices[0].message.content == PARIS.answer
    backends = sorted(m.info.backend for m in server.registry.loaded() if m.name == "smollm2")
    assert len(backends) == 2 and any("embeddings" in b for b in backends)


def test_bad_input_then_a_good_request(client, server):
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="smollm2", input=[])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="smollm2", input="hi", dimensions=100_000)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="hi")
    bad = httpx.post(server.base + "/api/embed", json={"model": "smollm2"})
    assert bad.status_code == 400 and isinstance(bad.json()["error"], str)
    assert len(client.embeddings.create(model="smollm2", input="hi").data) == 1


def test_an_empty_input_is_a_400_and_the_server_keeps_serving(client):
    # llama.cpp aborts the whole process on an empty batch: the load must refuse it first.
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.embeddings.create(model="smollm2", input=["fine", ""])
    assert len(client.embeddings.create(model="smollm2", input="still here").data) == 1


# -- qwen embed on the command line ------------------------------------------------------------------

def embed_cli(*args: str, input: str | None = None):
    from tests.processes import run_qwen

    return run_qwen("embed", str(require(SMOLLM2)), *args, input=input, timeout=120)


def test_qwen_embed_prints_one_array_per_text_equal_to_llama_cpp_pythons_own():
    result = embed_cli(*TEXTS)
    assert result.returncode == 0, result.stderr.decode()
    vectors = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(vectors) == 2
    for text, vector in zip(TEXTS, vectors):
        assert abs(math.sqrt(sum(x * x for x in vector)) - 1) < 1e-6
        assert cosine(vector, raw_embedding(text)) >= 0.9999
    assert cosine(vectors[0], vectors[1]) < 0.99  # different texts, different vectors


def test_qwen_embed_reads_stdin_lines_in_order_and_json_collects_them():
    piped = embed_cli(input="\n".join(reversed(TEXTS)) + "\n")
    assert piped.returncode == 0, piped.stderr.decode()
    lines = [json.loads(line) for line in piped.stdout.decode().splitlines()]
    args = [json.loads(line) for line in embed_cli(*reversed(TEXTS)).stdout.decode().splitlines()]
    assert len(lines) == 2 and all(cosine(a, b) > 0.999999 for a, b in zip(lines, args))
    collected = json.loads(embed_cli(TEXTS[0], "--json", "--dimensions", "64").stdout)
    assert collected["prompt_tokens"] > 0 and len(collected["embeddings"]) == 1
    short = collected["embeddings"][0]
    assert len(short) == 64 and abs(math.sqrt(sum(x * x for x in short)) - 1) < 1e-6


def test_qwen_embed_bad_input_is_a_clear_error():
    empty = embed_cli(input="a\n\nb\n")
    assert empty.returncode == 2 and b"line 2 of stdin is empty" in empty.stderr
    assert len(empty.stdout.decode().splitlines()) == 1  # what came before is kept
    wide = embed_cli("x", "--dimensions", "100000")
    assert wide.returncode == 1 and b"dimensions" in wide.stderr and b"Traceback" not in wide.stderr
    from tests.processes import run_qwen

    unknown = run_qwen("embed", "no-such-model-xyz", "x", timeout=60)
    assert unknown.returncode == 1 and b"unknown model" in unknown.stderr
