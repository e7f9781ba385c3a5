"""Ollama's native API through a real `qwen serve` app (uvicorn on 127.0.0.1, real llama.cpp), called
with the official `ollama` client unchanged: SmolLM2 for text, the tiny Qwen3 for thinking, the tiny
Qwen2 for the template's tools capability."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from tests.greedy import PARIS
from tests.serving import chat_models, serving, wait_until

ollama = pytest.importorskip("ollama")
pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "num_predict": 32}


@pytest.fixture(scope="module")
def server():
    with serving(chat_models()) as running:
        yield running


@pytest.fixture
def client(server) -> ollama.Client:
    return ollama.Client(host=server.base, timeout=60)


def test_chat_not_streamed_is_the_greedy_answer_with_true_counters(client):
    reply = client.chat(model="smollm2", messages=PARIS.messages(), stream=False, options=GREEDY)
    assert reply.message.role == "assistant"
    assert reply.message.content == PARIS.answer
    assert reply.done and reply.done_reason == "stop"
    assert reply.prompt_eval_count > 10 and 5 <= reply.eval_count <= 32
    assert 0 < reply.prompt_eval_duration < reply.total_duration
    assert 0 < reply.eval_duration < reply.total_duration


def test_chat_streamed_adds_up_to_the_same_answer(client):
    parts = list(client.chat(model="smollm2", messages=PARIS.messages(), options=GREEDY, stream=True))
    assert len(parts) > 2
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts) == PARIS.answer
    assert parts[-1].eval_count >= 5 and parts[-1].total_duration > 0


def test_generate_with_system_streamed_and_not(client):
    question = PARIS.turns[0]
    reply = client.generate(model="smollm2", prompt=question, system=PARIS.system, stream=False, options=GREEDY)
    assert reply.response == PARIS.answer and reply.done
    parts = list(client.generate(model="smollm2", prompt=question, system=PARIS.system, options=GREEDY,
                                 stream=True))
    assert "".join(p.response for p in parts) == PARIS.answer


def test_generate_raw_takes_the_prompt_as_is(client):
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    reply = client.generate(model="tiny-qwen2", prompt=prompt, raw=True, stream=False, options={"temperature": 0})
    assert reply.response.startswith("Hello world")


def test_num_predict_ends_with_length(client):
    reply = client.chat(model="smollm2", messages=PARIS.messages(), stream=False,
                        options={"temperature": 0, "num_predict": 3})
    assert reply.eval_count == 3 and reply.done_reason == "length"


def test_think_splits_thinking_from_content(client):
    ask = [{"role": "user", "content": "hi"}]
    reply = client.chat(model="tiny-qwen3", messages=ask, think=True, stream=False, options={"temperature": 0})
    assert reply.message.thinking.strip() == "Reason"
    assert reply.message.content.strip() == "Answer"
    parts = list(client.chat(model="tiny-qwen3", messages=ask, think="high", options={"temperature": 0},
                             stream=True))
    assert "".join(p.message.thinking or "" for p in parts).strip() == "Reason"
    assert "".join(p.message.content for p in parts).strip() == "Answer"
    off = client.chat(model="tiny-qwen3", messages=ask, think=False, stream=False, options={"temperature": 0})
    assert not off.message.thinking and off.message.content.strip() == "Answer"
    gen = client.generate(model="tiny-qwen3", prompt="hi", think=True, stream=False, options={"temperature": 0})
    assert gen.thinking.strip() == "Reason" and gen.response.strip() == "Answer"


def test_format_json_holds_to_the_schema(client):
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 12}},
              "required": ["capital"]}
    reply = client.chat(model="smollm2", messages=PARIS.messages(), format=schema, stream=False,
                        options={"temperature": 0, "num_predict": 40})
    import json

    assert set(json.loads(reply.message.content)) == {"capital"}


def test_tags_show_version(client, server):
    names = {m.model for m in client.list().models}
    assert {"smollm2", "tiny-qwen2", "tiny-qwen3"} <= names
    smol = next(m for m in client.list().models if m.model == "smollm2")
    assert smol.details.family == "llama" and smol.details.quantization_level == "Q4_1"
    assert smol.details.parameter_size.endswith("M") and smol.size > 50_000_000
    shown = client.show("tiny-qwen3")
    assert {"completion", "tools", "thinking"} <= set(shown.capabilities)
    assert "<|im_start|>" in shown.template and shown.details.family == "qwen3"
    assert shown.modelinfo["qwen3.context_length"] > 0
    assert "thinking" not in client.show("smollm2").capabilities
    version = httpx.get(server.base + "/api/version").json()["version"]
    assert version.count(".") == 2
    assert httpx.get(server.base + "/").text == "Ollama is running"
    assert httpx.head(server.base + "/").status_code == 200


def test_ps_keep_alive_zero_unloads(client, server):
    client.generate(model="tiny-qwen2", prompt="hi", stream=False, options={"num_predict": 2})
    loaded = {m.model: m for m in client.ps().models}
    assert "tiny-qwen2" in loaded and loaded["tiny-qwen2"].context_length > 0
    assert loaded["tiny-qwen2"].expires_at is not None and loaded["tiny-qwen2"].size > 0
    gone = client.generate(model="tiny-qwen2", prompt="", keep_alive=0)
    assert gone.done_reason == "unload"
    assert "tiny-qwen2" not in {m.model for m in client.ps().models}
    client.chat(model="tiny-qwen2", messages=[{"role": "user", "content": "hi"}], keep_alive=0, stream=False,
                options={"num_predict": 2})
    assert wait_until(lambda: "tiny-qwen2" not in {m.model for m in client.ps().models}, timeout=10)
    loaded_again = client.generate(model="tiny-qwen2", prompt="")
    assert loaded_again.done_reason == "load"
    assert "tiny-qwen2" in {m.model for m in client.ps().models}


def test_errors_in_ollamas_shape_then_a_good_request(client, server):
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="smollm2", messages=PARIS.messages(), stream=False, options={"temperature": -3})
    assert err.value.status_code == 400 and "temperature" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        list(client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="smollm2", messages=PARIS.messages(), think=True)
    assert err.value.status_code == 400 and "thinking" in err.value.error
    bad = httpx.post(server.base + "/api/chat", content=b"{not json")
    assert bad.status_code == 400 and set(bad.json()) == {"error"}
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("smollm2")
    assert err.value.status_code == 403 and "--allow-pull" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("smollm2")
    assert err.value.status_code == 403
    reply = client.chat(model="smollm2", messages=PARIS.messages(), stream=False, options=GREEDY)
    assert reply.message.content == PARIS.answer


def test_an_ollama_stream_and_an_openai_stream_at_once(client, server):
    results: dict[str, str] = {}

    def ollama_side() -> None:
        parts = client.chat(model="smollm2", messages=PARIS.messages(), options=GREEDY, stream=True)
        results["ollama"] = "".join(p.message.content for p in parts)

    def openai_side() -> None:
        sdk = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=60)
        stream = sdk.chat.completions.create(model="smollm2", messages=PARIS.messages(), temperature=0,
                                             max_tokens=32, stream=True)
        results["openai"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    threads = [threading.Thread(target=ollama_side), threading.Thread(target=openai_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {"ollama": PARIS.answer, "openai": PARIS.answer}
