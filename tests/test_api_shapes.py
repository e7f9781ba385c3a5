"""The Ollama and Anthropic shapes with a scripted backend at the seam, through a real uvicorn and the
official clients: tool calls parsed from the reply, security errors in each API's own shape, an error
mid-stream, a client that goes away. No model."""

from __future__ import annotations

import json

import anthropic
import httpx
import ollama
import pytest

from tests.serving import wait_until
from tests.test_server_fake import CALL, HI, WEATHER, ToolFake, fake_server

TOOL = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}


def test_ollama_tool_calls_arrive_with_object_arguments():
    with fake_server(ToolFake(replies=[CALL])) as server:
        client = ollama.Client(host=server.base)
        reply = client.chat(model="fake", messages=HI, tools=[WEATHER])
        call = reply.message.tool_calls[0]
        assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
        assert not reply.message.content
        parts = list(client.chat(model="fake", messages=HI, tools=[WEATHER], stream=True))
        calls = [c for p in parts for c in p.message.tool_calls or ()]
        assert [c.function.arguments for c in calls] == [{"city": "Paris"}]
        # The call goes back into the conversation as Ollama's clients send it: arguments as an object.
        back = client.chat(model="fake", tools=[WEATHER], messages=[
            *HI, {"role": "assistant", "content": "", "tool_calls": [call.model_dump(exclude_none=True)]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
        assert back.done
        sent, _ = server.backend.calls[-1]
        assert [m.role for m in sent] == ["user", "assistant", "tool"]
        assert json.loads(sent[1].tool_calls[0].arguments) == {"city": "Paris"}


def test_anthropic_tool_use_parsed_from_the_reply():
    with fake_server(ToolFake(replies=[CALL])) as server:
        client = anthropic.Anthropic(base_url=server.base, api_key="unused", max_retries=0)
        reply = client.messages.create(model="fake", messages=HI, tools=[TOOL], max_tokens=50)
        assert reply.stop_reason == "tool_use"
        assert [(b.type, b.name, b.input) for b in reply.content] == [("tool_use", "get_weather", {"city": "Paris"})]
        with client.messages.stream(model="fake", messages=HI, tools=[TOOL], max_tokens=50) as stream:
            final = stream.get_final_message()
        assert final.content[0].input == {"city": "Paris"} and final.stop_reason == "tool_use"


def test_the_key_and_the_host_check_answer_in_each_apis_shape():
    with fake_server(api_key="s3cret") as server:
        with pytest.raises(anthropic.AuthenticationError) as err:
            anthropic.Anthropic(base_url=server.base, api_key="wrong", max_retries=0).messages.create(
                model="fake", messages=HI, max_tokens=5)
        assert err.value.body["error"]["type"] == "authentication_error"
        good = anthropic.Anthropic(base_url=server.base, api_key="s3cret", max_retries=0)  # sent as x-api-key
        assert good.messages.create(model="fake", messages=HI, max_tokens=5).content[0].text == "Hello there."
        with pytest.raises(ollama.ResponseError) as oerr:
            ollama.Client(host=server.base).chat(model="fake", messages=HI)
        assert oerr.value.status_code == 401
        authed = ollama.Client(host=server.base, headers={"Authorization": "Bearer s3cret"})
        assert authed.chat(model="fake", messages=HI).message.content == "Hello there."
        assert httpx.get(server.base + "/").text == "Ollama is running"  # open, as /health is
    with fake_server() as server:
        refused = httpx.get(server.base + "/api/tags", headers={"Host": "evil.example.com"})
        assert refused.status_code == 403 and set(refused.json()) == {"error"}
        refused = httpx.post(server.base + "/v1/messages", json={}, headers={"Host": "evil.example.com"})
        assert refused.json()["type"] == "error" and refused.json()["error"]["type"] == "permission_error"


def test_bad_input_in_each_shape_then_a_good_request():
    with fake_server() as server:
        for body in (b"{nope", b"[]", json.dumps({"model": "fake", "messages": "hi"}).encode()):
            response = httpx.post(server.base + "/api/chat", content=body)
            assert response.status_code == 400 and isinstance(response.json()["error"], str)
            response = httpx.post(server.base + "/v1/messages", content=body)
            assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
        body = {"model": "fake", "prompt": "x", "template": "{{ 7*7 }}"}
        response = httpx.post(server.base + "/api/generate", json=body)
        assert response.status_code == 400 and "template" in response.json()["error"]
        response = httpx.post(server.base + "/api/chat", json={"model": "fake", "messages": HI, "keep_alive": "soon"})
        assert response.status_code == 400 and "keep_alive" in response.json()["error"]
        assert ollama.Client(host=server.base).chat(model="fake", messages=HI).message.content == "Hello there."


def test_an_error_mid_stream_goes_in_band_in_each_shape():
    backend = ToolFake(replies=["one two three four"])
    backend.fail_after = 2
    with fake_server(backend) as server:
        lines = httpx.post(server.base + "/api/chat", json={"model": "fake", "messages": HI}).text.splitlines()
        assert json.loads(lines[0])["message"]["content"] and "error" in json.loads(lines[-1])
        assert "/secret" not in lines[-1]
        text = httpx.post(server.base + "/v1/messages",
                          json={"model": "fake", "messages": HI, "max_tokens": 9, "stream": True}).text
        assert "event: error" in text and '"type":"error"' in text
        text = httpx.post(server.base + "/v1/responses", json={"model": "fake", "input": "hi", "stream": True}).text
        assert text.startswith("event: response.created") and "event: error" in text and "/secret" not in text


def test_alias_takes_name_equals_model():
    from tests.processes import run_qwen

    result = run_qwen("serve", "--alias", "claude-sonnet-4-6", "--port", "0", timeout=60)
    assert result.returncode == 2 and b"NAME=MODEL" in result.stderr


def test_an_ollama_client_that_goes_away_stops_its_generation():
    backend = ToolFake(replies=[" ".join(["word"] * 200), "Hello there."], delay=0.05)
    with fake_server(backend) as server:
        with httpx.stream("POST", server.base + "/api/chat", json={"model": "fake", "messages": HI}) as response:
            next(response.iter_lines())
        assert wait_until(lambda: all(m.scheduler.idle for m in server.registry.loaded()), timeout=3)
        assert ollama.Client(host=server.base).generate(model="fake", prompt="hi").response == "Hello there."


def test_openapi_lists_every_shape():
    with fake_server() as server:
        paths = httpx.get(server.base + "/openapi.json").json()["paths"]
        for path in ("/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/ps", "/api/version",
                     "/api/pull", "/api/delete", "/api/embed", "/api/embeddings", "/v1/messages",
                     "/v1/messages/count_tokens", "/v1/responses", "/v1/embeddings", "/"):
            assert path in paths, path
