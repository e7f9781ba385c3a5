"""Rerank through a real `qwen serve` app over plain HTTP: a tiny random-weight Qwen3-Reranker that
llama.cpp's own converter turned into a rank-pooled GGUF, scored against llama-cpp-python's own
decode of the same file and prompts (llama.cpp's C API, no qwencli code), and SmolLM2, which
cannot rerank."""

from __future__ import annotations

import httpx
import pytest

from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.models import QWEN_TOKENIZER, SMOLLM2, build_reranker, require
from tests.serving import RunningServer, wait_until

pytestmark = pytest.mark.slow

QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Paris is the capital of France.",
    "Bananas are yellow.",
    "x",
    "The Eiffel tower",
    "Berlin is in Germany",
    "hello",
]


@pytest.fixture(scope="module")
def reranker():
    return build_reranker(require(QWEN_TOKENIZER / "tokenizer.json").parent)


@pytest.fixture(scope="module")
def server(reranker):
    source = StaticSource({"reranker": reranker, "smollm2": require(SMOLLM2)})
    app = create_app(ServerConfig(max_queue=8), source)
    with RunningServer(app) as running:
        assert wait_until(lambda: httpx.get(running.base + "/health").status_code == 200, timeout=60)
        yield running


def post(server, body, path="/v1/rerank") -> httpx.Response:
    return httpx.post(server.base + path, json=body, timeout=120)


def raw_scores(path, query: str, documents: list[str]) -> tuple[list[float], list[int]]:
    """llama-cpp-python alone: the file's `rerank` template filled in as llama-server fills it,
    one llama_decode per document, the rank-pooled output's first value."""
    import llama_cpp

    llama = llama_cpp.Llama(model_path=str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
                            n_ctx=2048, n_batch=2048, n_ubatch=2048, verbose=False)
    try:
        template = llama.metadata["tokenizer.chat_template.rerank"]
        scores, counts = [], []
        for document in documents:
            prompt = template.replace("{query}", query).replace("{document}", document)
            tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
            memory = llama_cpp.llama_get_memory(llama.ctx)
            llama_cpp.llama_memory_clear(memory, True)
            array = (llama_cpp.llama_token * len(tokens))(*tokens)
            assert llama_cpp.llama_decode(llama.ctx, llama_cpp.llama_batch_get_one(array, len(tokens))) == 0
            scores.append(float(llama_cpp.llama_get_embeddings_seq(llama.ctx, 0)[0]))
            counts.append(len(tokens))
        return scores, counts
    finally:
        llama.close()


def test_the_converter_made_a_qwen3_reranker(reranker):
    from qwencli.formats.gguf import read_model

    model = read_model(reranker)
    assert model.metadata["qwen3.pooling_type"] == 4  # LLAMA_POOLING_TYPE_RANK
    template = model.metadata["tokenizer.chat_template.rerank"]
    assert "<Query>: {query}\n<Document>: {document}" in template and template.endswith("</think>\n\n")


def test_rerank_orders_by_llama_cpp_pythons_own_scores(server, reranker):
    reply = post(server, {"model": "reranker", "query": QUERY, "documents": DOCUMENTS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    expected, counts = raw_scores(reranker, QUERY, DOCUMENTS)
    order = sorted(range(len(expected)), key=lambda i: -expected[i])
    gaps = [expected[a] - expected[b] for a, b in zip(order, order[1:])]
    assert min(gaps) > 1e-3  # the order is not a coin toss between near-equal scores
    assert [r["index"] for r in body["results"]] == order
    for result in body["results"]:
        assert abs(result["relevance_score"] - expected[result["index"]]) < 1e-5
        assert 0.0 < result["relevance_score"] < 1.0  # P("yes") after llama.cpp's softmax
    assert body["usage"]["prompt_tokens"] == sum(counts)
    assert body["object"] == "list" and body["model"] == "reranker"


def test_top_n_return_documents_and_llama_servers_aliases(server):
    full = post(server, {"model": "reranker", "query": QUERY, "documents": DOCUMENTS}).json()["results"]
    top = post(server, {"model": "reranker", "query": QUERY, "documents": DOCUMENTS, "top_n": 2,
                        "return_documents": True}).json()["results"]
    assert [r["index"] for r in top] == [r["index"] for r in full[:2]]
    assert [r["document"]["text"] for r in top] == [DOCUMENTS[r["index"]] for r in top]
    for alias in ("/rerank", "/v1/reranking", "/reranking"):
        again = post(server, {"model": "reranker", "query": QUERY, "documents": DOCUMENTS}, path=alias)
        assert again.status_code == 200 and again.json()["results"] == full
    paths = httpx.get(server.base + "/openapi.json").json()["paths"]
    assert "/v1/rerank" in paths and "/v1/reranking" in paths


def test_a_chat_model_cannot_rerank_and_a_reranker_gives_no_embeddings(server):
    refused = post(server, {"model": "smollm2", "query": QUERY, "documents": DOCUMENTS})
    assert refused.status_code == 400
    assert "cannot rerank" in refused.json()["error"]["message"]
    vectors = httpx.post(server.base + "/v1/embeddings", json={"model": "reranker", "input": "hi"}, timeout=60)
    assert vectors.status_code == 400 and "reranker" in vectors.json()["error"]["message"]
    assert post(server, {"model": "reranker", "query": QUERY, "documents": ["a"]}).status_code == 200


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "reranker", "query": QUERY, "documents": []}, "documents"),
        ({"model": "reranker", "documents": DOCUMENTS}, "query"),
        ({"model": "reranker", "query": QUERY}, "documents"),
        ({"model": "reranker", "query": QUERY, "documents": "one string"}, "documents"),
        ({"model": "reranker", "query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ],
)
def test_bad_input_is_a_400_then_a_good_request(server, body, param):
    bad = post(server, body)
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["param"] == param
    good = post(server, {"model": "reranker", "query": QUERY, "documents": DOCUMENTS[:2]})
    assert good.status_code == 200 and len(good.json()["results"]) == 2


def test_an_unknown_model_is_a_404(server):
    assert post(server, {"model": "nope", "query": QUERY, "documents": ["a"]}).status_code == 404


# -- a client that goes away ---------------------------------------------------------------------------

class SlowRanker:
    """A rerank load that takes 50 ms a document and notes where it was stopped (a fake at the
    loader seam: the real engine scores the tiny model's documents faster than a client can leave)."""

    def __init__(self):
        from qwencli.backends.base import ModelInfo

        self.info = ModelInfo(name="slow", backend="fake (rerank)", context_length=2048)
        self.slots = 1
        self.scored = 0
        self.stopped = False

    def rerank(self, query, documents, cancelled):
        import time

        from qwencli.backends.llama_rerank import Stopped

        for _ in documents:
            if cancelled():
                self.stopped = True
                raise Stopped()
            time.sleep(0.05)
            self.scored += 1
        return [0.5] * len(documents), len(documents)

    def close(self):
        pass


def test_a_client_that_disconnects_stops_the_scoring_and_the_model_serves_the_next(reranker):
    ranker = SlowRanker()
    app = create_app(ServerConfig(max_queue=8), StaticSource({"slow": reranker}),
                     loader=lambda resolved, load, parallel: ranker)
    with RunningServer(app) as server:
        body = {"model": "slow", "query": QUERY, "documents": ["d"] * 200}  # 10 s of scoring
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.base + "/v1/rerank", json=body, timeout=httpx.Timeout(60, read=0.5))
        assert wait_until(lambda: ranker.stopped, timeout=5)
        assert ranker.scored < 100
        after = ranker.scored
        good = httpx.post(server.base + "/v1/rerank", json={**body, "documents": ["a", "b"]}, timeout=10)
        assert good.status_code == 200 and ranker.scored == after + 2
