"""Anthropic's Messages API through a real `qwen serve` app (uvicorn on 127.0.0.1, real llama.cpp),
called with the official `anthropic` SDK unchanged: SmolLM2 for text, the tiny Qwen3 for thinking
blocks, the tiny Qwen2 (Qwen2.5's Hermes template) for a forced tool_use and its tool_result."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.greedy import PARIS
from tests.models import QWEN_TOKENIZER, build_hybrid, require
from tests.serving import chat_models, serving

anthropic = pytest.importorskip("anthropic")
ollama = pytest.importorskip("ollama")
pytestmark = pytest.mark.slow

#: The SDK (2.x) has no sampling arguments; the API still takes them, as extra body fields.
GREEDY = {"temperature": 0}
QUESTION = [{"role": "user", "content": PARIS.turns[0]}]
SETTINGS = {"name": "apply_settings", "description": "Apply settings",
            "input_schema": {"type": "object", "properties": {
                "unit": {"enum": ["celsius", "fahrenheit"]}, "enabled": {"type": "boolean"}},
                "required": ["unit", "enabled"]}}


@pytest.fixture(scope="module")
def server():
    tokenizer = require(QWEN_TOKENIZER / "tokenizer.json").parent
    # Random weights under Qwen3.5's template (thinking on): its reasoning never closes by itself.
    models = {**chat_models(), "tiny-qwen35": build_hybrid("gguf", "qwen35", tokenizer)}
    with serving(models, aliases=(("claude-sonnet-4-6", "smollm2"),)) as running:
        yield running


@pytest.fixture
def client(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base, api_key="unused", max_retries=0, timeout=60)


def test_a_message_not_streamed_is_the_greedy_answer(client):
    reply = client.messages.create(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=32,
                                   extra_body=GREEDY)
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].text == PARIS.answer
    assert reply.stop_reason == "end_turn" and reply.role == "assistant" and reply.model == "smollm2"
    assert reply.usage.input_tokens > 10 and 5 <= reply.usage.output_tokens <= 32


def test_a_streamed_message_and_system_blocks_under_an_alias(client):
    system = [{"type": "text", "text": PARIS.system}]
    with client.messages.stream(model="claude-sonnet-4-6", system=system, messages=QUESTION, max_tokens=32,
                                extra_body=GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == PARIS.answer
    assert final.content[0].text == PARIS.answer and final.stop_reason == "end_turn"
    assert final.model == "claude-sonnet-4-6" and final.usage.input_tokens > 10 and final.usage.output_tokens >= 5


def test_max_tokens_and_raw_event_order(client, server):
    reply = client.messages.create(model="smollm2", messages=QUESTION, max_tokens=3, extra_body=GREEDY)
    assert reply.stop_reason == "max_tokens" and reply.usage.output_tokens == 3
    events = [e.type for e in client.messages.create(model="smollm2", messages=QUESTION, max_tokens=3,
                                                      extra_body=GREEDY, stream=True)]
    assert events[:2] == ["message_start", "content_block_start"]  # the SDK drops pings
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    body = {"model": "smollm2", "messages": QUESTION, "max_tokens": 3, "stream": True, **GREEDY}
    lines = httpx.post(server.base + "/v1/messages", json=body, timeout=60).text.splitlines()
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"] and names[-1] == "message_stop"


def test_thinking_blocks_from_a_tiny_qwen3(client):
    ask = [{"role": "user", "content": "hi"}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    reply = client.messages.create(model="tiny-qwen3", messages=ask, max_tokens=2048, thinking=thinking,
                                   extra_body=GREEDY)
    kinds = [b.type for b in reply.content]
    assert kinds == ["thinking", "text"], reply.content
    assert reply.content[0].thinking.strip() == "Reason" and reply.content[1].text.strip() == "Answer"
    with client.messages.stream(model="tiny-qwen3", messages=ask, max_tokens=2048, thinking=thinking,
                                extra_body=GREEDY) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking.strip() == "Reason"
    off = client.messages.create(model="tiny-qwen3", messages=ask, max_tokens=64, extra_body=GREEDY)
    assert [b.type for b in off.content] == ["text"] and off.content[0].text.strip() == "Answer"


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_use_round_trips_a_tool_result(client, stream):
    ask = [{"role": "user", "content": "Apply the settings."}]
    choice = {"type": "tool", "name": "apply_settings"}
    if stream:
        with client.messages.stream(model="tiny-qwen2", messages=ask, tools=[SETTINGS], tool_choice=choice,
                                    max_tokens=200, extra_body=GREEDY) as s:
            reply = s.get_final_message()
    else:
        reply = client.messages.create(model="tiny-qwen2", messages=ask, tools=[SETTINGS], tool_choice=choice,
                                       max_tokens=200, extra_body=GREEDY)
    assert reply.stop_reason == "tool_use"
    uses = [b for b in reply.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "apply_settings"
    assert uses[0].input["unit"] in ("celsius", "fahrenheit") and type(uses[0].input["enabled"]) is bool
    follow = client.messages.create(
        model="tiny-qwen2", tools=[SETTINGS], max_tokens=8, extra_body=GREEDY,
        messages=[*ask, {"role": "assistant", "content": reply.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                                "content": "applied"}]}])
    assert follow.content[0].type == "text" and follow.content[0].text.startswith("Hello world")


def test_count_tokens(client):
    counted = client.messages.count_tokens(model="smollm2", system=PARIS.system, messages=QUESTION)
    reply = client.messages.create(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=1)
    assert counted.input_tokens == reply.usage.input_tokens > 10


def test_errors_arrive_as_the_sdks_classes_then_a_good_request(client):
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="no-such-model", messages=QUESTION, max_tokens=8)
    assert err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as err:
        client.post("/v1/messages", cast_to=object, body={"model": "smollm2", "messages": QUESTION})
    assert "max_tokens" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="smollm2", messages=QUESTION, max_tokens=8, extra_body={"temperature": 1.5})
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="smollm2", messages=QUESTION, max_tokens=8, tool_choice={"type": "any"})
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="smollm2", messages=QUESTION, max_tokens=100,
                               thinking={"type": "enabled", "budget_tokens": 1024})
    reply = client.messages.create(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=32,
                                   extra_body=GREEDY)
    assert reply.content[0].text == PARIS.answer


def test_an_anthropic_stream_and_an_ollama_stream_at_once(client, server):
    results: dict[str, str] = {}

    def anthropic_side() -> None:
        with client.messages.stream(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=32,
                                    extra_body=GREEDY) as s:
            results["anthropic"] = "".join(s.text_stream)

    def ollama_side() -> None:
        parts = ollama.Client(host=server.base).chat(model="smollm2", messages=PARIS.messages(), stream=True,
                                                     options={"temperature": 0, "num_predict": 32})
        results["ollama"] = "".join(p.message.content for p in parts)

    threads = [threading.Thread(target=anthropic_side), threading.Thread(target=ollama_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {"anthropic": PARIS.answer, "ollama": PARIS.answer}


# -- thinking budget, stop sequences, message_start usage ------------------------------------------

def test_the_thinking_budget_ends_the_reasoning_and_the_answer_follows(client):
    ask = [{"role": "user", "content": "hi"}]
    unbounded = client.messages.create(model="tiny-qwen35", messages=ask, max_tokens=1100,
                                       thinking={"type": "adaptive"}, extra_body=GREEDY)
    assert [b.type for b in unbounded.content] == ["thinking"] and unbounded.stop_reason == "max_tokens"
    budget = {"type": "enabled", "budget_tokens": 1024}
    for stream in (False, True):
        if stream:
            with client.messages.stream(model="tiny-qwen35", messages=ask, max_tokens=1100, thinking=budget,
                                        extra_body=GREEDY) as s:
                reply = s.get_final_message()
        else:
            reply = client.messages.create(model="tiny-qwen35", messages=ask, max_tokens=1100, thinking=budget,
                                           extra_body=GREEDY)
        assert [b.type for b in reply.content] == ["thinking", "text"], (stream, reply.content)
        # The same greedy reasoning, cut after 1024 of its tokens; then an answer of its own.
        cut = reply.content[0].thinking
        assert unbounded.content[0].thinking.startswith(cut) and len(cut) < len(unbounded.content[0].thinking)
        assert reply.content[1].text and "</think>" not in reply.content[1].text
        assert reply.stop_reason == "max_tokens" and reply.usage.output_tokens == 1100


def test_a_stop_sequence_is_the_stop_reason_and_is_named(client):
    for stream in (False, True):
        kwargs = dict(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=32,
                      stop_sequences=["nowhere", " Paris"], extra_body=GREEDY)
        if stream:
            with client.messages.stream(**kwargs) as s:
                reply = s.get_final_message()
        else:
            reply = client.messages.create(**kwargs)
        assert reply.content[0].text == PARIS.answer[: PARIS.answer.index(" Paris")], stream
        assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", " Paris"), stream
    plain = client.messages.create(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=32,
                                   stop_sequences=["nowhere"], extra_body=GREEDY)
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None) and plain.content[0].text == PARIS.answer


def test_message_start_carries_the_prompts_true_input_tokens(client):
    collected = client.messages.create(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=8,
                                       extra_body=GREEDY)
    counted = client.messages.count_tokens(model="smollm2", system=PARIS.system, messages=QUESTION)
    events = list(client.messages.create(model="smollm2", system=PARIS.system, messages=QUESTION, max_tokens=8,
                                         extra_body=GREEDY, stream=True))
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == collected.usage.input_tokens == counted.input_tokens > 10
