"""Embedding and rerank models are not chat models: `qwen run` says so (before anything downloads, for
a catalog name), and `qwen serve` loads them in llama.cpp's embedding context — named at start too —
while a chat request for one is a clear 400. What a model is for comes from the catalog's `task`
column, else from the GGUF's own pooling type."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from qwencli.backends import task_of
from qwencli.resolved import ResolvedModel
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.models import QWEN_TOKENIZER, SMOLLM2, build_reranker, require
from tests.processes import run_qwen
from tests.serving import RunningServer, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reranker() -> Path:
    return build_reranker(require(QWEN_TOKENIZER / "tokenizer.json").parent)


def gguf(path: Path, **hints) -> ResolvedModel:
    return ResolvedModel(name=path.stem, format="gguf", path=path, hints=hints)


def test_the_task_comes_from_the_catalog_else_from_the_files_pooling(reranker, tiny_qwen3_gguf):
    assert task_of(gguf(reranker)) == "rerank"  # rank pooling, declared by the converter
    assert task_of(gguf(require(SMOLLM2))) == "chat"
    assert task_of(gguf(tiny_qwen3_gguf)) == "chat"
    assert task_of(gguf(require(SMOLLM2), task="embedding")) == "embedding"  # a catalog embedding row
    assert task_of(gguf(reranker, task="chat")) == "rerank"  # "chat" is every row's default: the file decides


@pytest.mark.parametrize("name, says, hint", [
    ("qwen3-reranker-0.6b", b"qwen3-reranker-0.6b is a reranker, not a chat model", b"POST /v1/rerank"),
    ("qwen3-embedding:0.6b", b"qwen3-embedding:0.6b is an embedding model, not a chat model", b"qwen embed"),
])
def test_qwen_run_refuses_a_catalog_embedding_or_rerank_model_before_pulling(name, says, hint, isolated_home):
    result = run_qwen("run", name, "hi", env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert result.returncode == 1, result.stderr.decode()
    assert says in result.stderr and hint in result.stderr and b"Traceback" not in result.stderr
    assert not result.stdout
    assert not (isolated_home / "hf").exists() or not any((isolated_home / "hf").rglob("*.gguf"))


def test_qwen_run_refuses_a_reranker_file_by_its_pooling(reranker):
    result = run_qwen("run", str(reranker), "hi", timeout=60)
    assert result.returncode == 1 and b"is a reranker, not a chat model" in result.stderr, result.stderr.decode()


def test_serve_loads_a_reranker_named_at_start_for_rerank_and_refuses_chat(reranker):
    app = create_app(ServerConfig(startup_models=("reranker",)), StaticSource({"reranker": reranker}))
    with RunningServer(app) as server:
        assert wait_until(lambda: httpx.get(server.base + "/health").status_code == 200, timeout=60)
        assert [m.info.backend for m in server.registry.loaded()] == ["llama.cpp (embeddings)"]
        ranked = httpx.post(server.base + "/v1/rerank", json={"model": "reranker", "query": "q",
                                                                "documents": ["a", "b"]}, timeout=60)
        assert ranked.status_code == 200 and len(ranked.json()["results"]) == 2
        chat = httpx.post(server.base + "/v1/chat/completions", timeout=60,
                          json={"model": "reranker", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400
        assert "is a reranker, not a chat model" in chat.json()["error"]["message"]
        ollama = httpx.post(server.base + "/api/chat", timeout=60,
                            json={"model": "reranker", "messages": [{"role": "user", "content": "hi"}]})
        assert ollama.status_code == 400 and "not a chat model" in ollama.json()["error"]
        again = httpx.post(server.base + "/v1/rerank", json={"model": "reranker", "query": "q",
                                                              "documents": ["a"]}, timeout=60)
        assert again.status_code == 200
        shown = httpx.post(server.base + "/api/show", json={"model": "reranker"}, timeout=60).json()
        assert shown["capabilities"] == ["rerank"]


def _raw_last_token(path: Path, text: str) -> list[float]:
    import llama_cpp

    llama = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=2048, n_batch=2048, n_ubatch=2048,
                            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST, verbose=False)
    try:
        return llama.embed(text, normalize=False)
    finally:
        llama.close()


def test_a_catalog_embedding_model_without_declared_pooling_pools_its_last_token():
    # The first Qwen3-Embedding GGUFs declared no pooling; the catalog row says what the model is.
    smollm2 = require(SMOLLM2)
    source = StaticSource({"emb": ResolvedModel(name="emb", format="gguf", path=smollm2, hints={"task": "embedding"})})
    app = create_app(ServerConfig(startup_models=("emb",)), source)
    text = "The capital of France is Paris."
    with RunningServer(app) as server:
        assert wait_until(lambda: httpx.get(server.base + "/health").status_code == 200, timeout=60)
        reply = httpx.post(server.base + "/v1/embeddings", json={"model": "emb", "input": text}, timeout=60)
        assert reply.status_code == 200, reply.text
        chat = httpx.post(server.base + "/v1/chat/completions", timeout=60,
                          json={"model": "emb", "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400 and "is an embedding model" in chat.json()["error"]["message"]
        shown = httpx.post(server.base + "/api/show", json={"model": "emb"}, timeout=60).json()
        assert shown["capabilities"] == ["embedding"]  # as Ollama marks embedding models
    vector = reply.json()["data"][0]["embedding"]
    raw = _raw_last_token(smollm2, text)
    cosine = sum(a * b for a, b in zip(vector, raw)) / math.sqrt(sum(b * b for b in raw))
    assert cosine >= 0.9999
