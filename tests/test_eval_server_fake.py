"""The evaluation features of `qwen serve` at the seam: several prompts in one completions request
on any backend; log-probabilities, echo, token-id prompts and the tokenizer endpoints refused by
name for a backend that is not llama.cpp (rather than answered without them). Real uvicorn, no model."""

from __future__ import annotations

import httpx
import openai
import pytest

from qwencli.resolved import ResolvedModel
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.fakes import FakeBackend
from tests.serving import RunningServer


@pytest.fixture(scope="module")
def server():
    backend = FakeBackend(replies=["Hello there."])
    source = StaticSource({"fake": ResolvedModel(name="fake", format="remote")})
    app = create_app(ServerConfig(), source, loader=lambda resolved, load, parallel: backend)
    with RunningServer(app) as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_several_prompts_are_one_choice_each_in_order(client):
    out = client.completions.create(model="fake", prompt=["one two", "three four five"], max_tokens=5)
    assert [(c.index, c.text, c.finish_reason) for c in out.choices] == [
        (0, "Hello there.", "stop"),
        (1, "Hello there.", "stop"),
    ]
    assert out.usage.prompt_tokens == 2 + 3 and out.usage.completion_tokens == 2 + 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "hi", "logprobs": 1}, "logprobs"),
        ({"prompt": "hi", "echo": True}, "echo"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": ["a", "b"], "stream": True}, "prompt"),
        ({"prompt": "hi", "logprobs": True}, "logprobs"),  # a bool is not a count here
    ],
)
def test_what_only_llama_cpp_can_answer_is_a_400_naming_the_field(client, body, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="fake", **body)
    assert caught.value.body["param"] == param
    assert client.completions.create(model="fake", prompt="hi").choices[0].text == "Hello there."


def test_chat_logprobs_on_another_backend_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}], logprobs=True)
    assert caught.value.body["param"] == "logprobs"


def test_tokenizer_endpoints_need_a_llama_cpp_model(server):
    reply = httpx.post(server.base + "/tokenize", json={"model": "fake", "content": "hi"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"
    reply = httpx.post(server.base + "/tokenize", json={"model": "fake"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "content"
    assert httpx.post(server.base + "/detokenize", json={"model": "fake", "tokens": "x"}).status_code == 400
