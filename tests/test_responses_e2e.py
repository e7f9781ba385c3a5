"""OpenAI's Responses API through a real `qwen serve` app (uvicorn on 127.0.0.1, real llama.cpp), with
the official `openai` SDK's `client.responses`: SmolLM2 for text, the tiny Qwen3 for reasoning items,
the tiny Qwen2 (Qwen2.5's Hermes template) for a forced function call and its output."""

from __future__ import annotations

import json
import threading

import anthropic
import openai
import pytest

from tests.greedy import PARIS
from tests.serving import chat_models, serving

pytestmark = pytest.mark.slow

SETTINGS = {"type": "function", "name": "apply_settings", "description": "Apply settings",
            "parameters": {"type": "object", "properties": {
                "unit": {"enum": ["celsius", "fahrenheit"]}, "enabled": {"type": "boolean"}},
                "required": ["unit", "enabled"]}}


@pytest.fixture(scope="module")
def server():
    with serving(chat_models()) as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_a_response_not_streamed(client):
    reply = client.responses.create(model="smollm2", instructions=PARIS.system, input=PARIS.turns[0],
                                    temperature=0, max_output_tokens=32)
    assert reply.status == "completed" and reply.output_text == PARIS.answer
    assert [item.type for item in reply.output] == ["message"]
    assert reply.usage.input_tokens > 10 and 5 <= reply.usage.output_tokens <= 32


def test_a_response_streamed_with_input_items(client):
    items = [{"role": "developer", "content": PARIS.system},
             {"role": "user", "content": [{"type": "input_text", "text": PARIS.turns[0]}]}]
    with client.responses.stream(model="smollm2", input=items, temperature=0, max_output_tokens=32) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1 and "".join(deltas) == PARIS.answer
    assert final.output_text == PARIS.answer and final.status == "completed"


def test_max_output_tokens_is_incomplete(client):
    reply = client.responses.create(model="smollm2", input=PARIS.turns[0], temperature=0, max_output_tokens=3)
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"


def test_reasoning_items_from_a_tiny_qwen3(client):
    reply = client.responses.create(model="tiny-qwen3", input="hi", reasoning={"effort": "high"}, temperature=0)
    assert [item.type for item in reply.output] == ["reasoning", "message"]
    assert reply.output[0].content[0].text.strip() == "Reason" and reply.output_text.strip() == "Answer"
    with client.responses.stream(model="tiny-qwen3", input="hi", reasoning={"effort": "low"}, temperature=0) as s:
        kinds = [e.type for e in s]
    assert "response.reasoning_text.delta" in kinds and kinds[-1] == "response.completed"
    off = client.responses.create(model="tiny-qwen3", input="hi", reasoning={"effort": "none"}, temperature=0)
    assert [item.type for item in off.output] == ["message"]


def test_json_schema_format(client):
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 12}},
              "required": ["capital"], "additionalProperties": False}
    reply = client.responses.create(model="smollm2", instructions=PARIS.system, input=PARIS.turns[0],
                                    temperature=0, max_output_tokens=40,
                                    text={"format": {"type": "json_schema", "name": "capital", "schema": schema}})
    assert set(json.loads(reply.output_text)) == {"capital"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_round_trip(client, stream):
    ask = [{"role": "user", "content": "Apply the settings."}]
    choice = {"type": "function", "name": "apply_settings"}
    if stream:
        with client.responses.stream(model="tiny-qwen2", input=ask, tools=[SETTINGS], tool_choice=choice,
                                     temperature=0, max_output_tokens=200) as s:
            events = [e.type for e in s]
            reply = s.get_final_response()
        assert "response.function_call_arguments.delta" in events
    else:
        reply = client.responses.create(model="tiny-qwen2", input=ask, tools=[SETTINGS], tool_choice=choice,
                                        temperature=0, max_output_tokens=200)
    calls = [item for item in reply.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "apply_settings"
    args = json.loads(calls[0].arguments)
    assert args["unit"] in ("celsius", "fahrenheit") and type(args["enabled"]) is bool
    follow = client.responses.create(
        model="tiny-qwen2", tools=[SETTINGS], temperature=0, max_output_tokens=8,
        input=[*ask, {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name,
                      "arguments": calls[0].arguments},
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": "applied"}])
    assert follow.output_text.startswith("Hello world")


def test_bad_input_is_a_400_then_a_good_request(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="smollm2", input="hi", previous_response_id="resp_123")
    assert "stateless" in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="smollm2", input=[{"type": "web_search_call"}])
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="smollm2", input="hi", tool_choice="required")
    reply = client.responses.create(model="smollm2", instructions=PARIS.system, input=PARIS.turns[0],
                                    temperature=0, max_output_tokens=32)
    assert reply.output_text == PARIS.answer


def test_a_responses_stream_and_an_anthropic_stream_at_once(client, server):
    results: dict[str, str] = {}

    def responses_side() -> None:
        with client.responses.stream(model="smollm2", instructions=PARIS.system, input=PARIS.turns[0],
                                     temperature=0, max_output_tokens=32) as s:
            results["responses"] = "".join(e.delta for e in s if e.type == "response.output_text.delta")

    def anthropic_side() -> None:
        sdk = anthropic.Anthropic(base_url=server.base, api_key="unused", max_retries=0, timeout=60)
        with sdk.messages.stream(model="smollm2", system=PARIS.system, max_tokens=32, extra_body={"temperature": 0},
                                 messages=[{"role": "user", "content": PARIS.turns[0]}]) as s:
            results["anthropic"] = "".join(s.text_stream)

    threads = [threading.Thread(target=responses_side), threading.Thread(target=anthropic_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == {"responses": PARIS.answer, "anthropic": PARIS.answer}
