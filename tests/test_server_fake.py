"""The server's own behaviour with a scripted backend at the seam: security, queueing, errors in
the middle of a stream, tool calls, loading and unloading. Real uvicorn, real sockets, no model."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Any, Iterator

import httpx
import openai
import pytest

from qwencli.backends.base import ModelInfo
from qwencli.chat import Chunk
from qwencli.resolved import ResolvedModel
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.fakes import FakeBackend
from tests.processes import run_qwen
from tests.serving import RunningServer, wait_until

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


class ToolFake(FakeBackend):
    """A fake whose template "supports tools", and that can fail where told to."""

    fail_after: int | None = None  # raise after this many chunks
    error: BaseException = RuntimeError("engine on fire at /secret/path/model.gguf")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.info = ModelInfo(name="fake", backend="fake", context_length=self.context_length, supports_tools=True)

    def _stream(self, reply: str, n_prompt: int) -> Iterator[Chunk]:
        for i, chunk in enumerate(super()._stream(reply, n_prompt)):
            if self.fail_after is not None and i >= self.fail_after:
                raise self.error
            yield chunk


@contextlib.contextmanager
def fake_server(backend: FakeBackend | None = None, *, loader=None, **config: Any):
    backend = backend if backend is not None else ToolFake()
    source = StaticSource({"fake": ResolvedModel(name="fake", format="remote")})
    app = create_app(ServerConfig(**config), source, loader=loader or (lambda resolved, load, parallel: backend))
    with RunningServer(app) as server:
        server.backend = backend
        yield server


def sdk(server, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=key, max_retries=0, timeout=30)


def chat(client: openai.OpenAI, **kwargs: Any):
    return client.chat.completions.create(model="fake", messages=HI, **kwargs)


# -- security ---------------------------------------------------------------------------------


def test_api_key_required_everywhere_but_health():
    with fake_server(api_key="s3cret") as server:
        with pytest.raises(openai.AuthenticationError) as err:
            chat(sdk(server, "wrong"))
        assert err.value.body["code"] == "invalid_api_key" and "s3cret" not in err.value.message
        assert httpx.post(server.base + "/v1/chat/completions", json={}).status_code == 401  # before validation
        assert httpx.get(server.base + "/openapi.json").status_code == 401
        assert httpx.get(server.base + "/api/ps", headers={"Authorization": "Basic s3cret"}).status_code == 401
        assert httpx.get(server.base + "/health").status_code == 200
        assert chat(sdk(server, "s3cret")).choices[0].message.content == "Hello there."


def test_host_header_must_name_loopback_when_bound_to_loopback():
    with fake_server() as server:
        for host in ("evil.example.com", "evil.example.com:80", "127.0.0.1.evil.com"):
            response = httpx.get(server.base + "/v1/models", headers={"Host": host})
            assert response.status_code == 403 and response.json()["error"]["code"] == "host_not_allowed"
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "[::1]:1"):
            assert httpx.get(server.base + "/v1/models", headers={"Host": host}).status_code == 200


def test_cors_closed_by_default_and_open_to_an_allowed_origin():
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    with fake_server() as server:
        response = httpx.options(server.base + "/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        response = httpx.get(server.base + "/v1/models", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers
    with fake_server(cors_origins=("https://app.example",)) as server:
        response = httpx.options(server.base + "/v1/chat/completions", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(server.base + "/v1/chat/completions", headers={**preflight, "Origin": "https://x.example"})
        assert other.headers.get("access-control-allow-origin") != "https://x.example"


def test_body_size_is_limited():
    with fake_server(max_body_bytes=10_000) as server:
        big = {"model": "fake", "messages": [{"role": "user", "content": "x" * 20_000}]}
        response = httpx.post(server.base + "/v1/chat/completions", json=big)
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

        def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(30):
                yield b"x" * 1000

        response = httpx.post(server.base + "/v1/chat/completions", content=chunks())
        assert response.status_code == 413
        assert chat(sdk(server)).choices[0].message.content == "Hello there."


# -- queueing ---------------------------------------------------------------------------------


def _read_stream(server, out: list, **body: Any) -> None:
    payload = {"model": "fake", "messages": HI, "stream": True, **body}
    with httpx.stream("POST", server.base + "/v1/chat/completions", json=payload, timeout=30) as response:
        out.append((response.status_code, [line for line in response.iter_lines() if line]))


def test_full_queue_is_429_with_retry_after_and_nobody_is_cancelled():
    backend = ToolFake(replies=["one two three four five six"], delay=0.1)
    with fake_server(backend, max_queue=1) as server:
        outs: list[list] = [[], []]
        threads = [threading.Thread(target=_read_stream, args=(server, out)) for out in outs]
        threads[0].start()
        assert wait_until(lambda: server.registry.loaded() and server.registry.loaded()[0].scheduler.running == 1)
        threads[1].start()
        assert wait_until(lambda: server.registry.loaded()[0].scheduler.waiting == 1)
        with pytest.raises(openai.RateLimitError) as err:
            chat(sdk(server))
        assert int(err.value.response.headers["retry-after"]) >= 1
        assert err.value.code == "queue_full"
        for thread in threads:
            thread.join(30)
        for status, lines in (out[0] for out in outs):
            assert status == 200 and lines[-1] == "data: [DONE]"
            text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                           for line in lines[:-1])
            assert text == "one two three four five six"
        assert chat(sdk(server)).choices[0].message.content == "one two three four five six"


def test_a_client_that_leaves_the_line_frees_its_place():
    backend = ToolFake(replies=["a b c d e f g h"], delay=0.1)
    with fake_server(backend, max_queue=1) as server:
        first: list = []
        runner = threading.Thread(target=_read_stream, args=(server, first))
        runner.start()
        assert wait_until(lambda: server.registry.loaded() and server.registry.loaded()[0].scheduler.running == 1)
        scheduler = server.registry.loaded()[0].scheduler
        # A raw socket: the status line comes only when its turn comes, so no HTTP client returns.
        body = json.dumps({"model": "fake", "messages": HI, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert wait_until(lambda: scheduler.waiting == 1)
        assert wait_until(lambda: scheduler.waiting == 0, timeout=2)  # gone before its turn came
        runner.join(30)
        assert scheduler.waiting == 0
        assert len(backend.calls) == 1  # the one that left never generated
        assert chat(sdk(server)).choices[0].message.content == "a b c d e f g h"


# -- errors -----------------------------------------------------------------------------------


def test_an_error_after_the_stream_started_goes_in_band_then_done():
    backend = ToolFake(replies=["one two three"])
    backend.fail_after = 2
    with fake_server(backend) as server:
        out: list = []
        _read_stream(server, out)
        status, lines = out[0]
        assert status == 200
        assert lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2][6:])["error"]
        assert error["type"] == "server_error" and "/secret" not in error["message"]
        assert "one" in lines[1]
        with pytest.raises(openai.APIError):  # the SDK raises on an in-band error
            list(chat(sdk(server), stream=True))
        backend.fail_after = None
        assert chat(sdk(server)).choices[0].message.content == "one two three"


def test_an_internal_error_before_the_stream_is_a_500_without_paths():
    backend = ToolFake()
    backend.fail_after = 0
    with fake_server(backend) as server:
        response = httpx.post(server.base + "/v1/chat/completions", json={"model": "fake", "messages": HI})
        assert response.status_code == 500
        assert response.headers["x-should-retry"] == "false"
        assert "/secret" not in response.text and "Traceback" not in response.text
        with pytest.raises(openai.InternalServerError):
            chat(sdk(server), stream=True)
        backend.fail_after = None
        assert chat(sdk(server)).choices[0].message.content == "Hello there."


def test_unknown_endpoint_and_method_have_the_openai_shape():
    with fake_server() as server:
        response = httpx.get(server.base + "/v1/nothing")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        response = httpx.get(server.base + "/v1/chat/completions")
        assert response.status_code == 405 and "error" in response.json()


# -- tool calls (auto) ------------------------------------------------------------------------


def test_auto_tool_calls_are_returned_as_tool_calls():
    backend = ToolFake(replies=["Let me check. " + CALL])
    with fake_server(backend) as server:
        reply = chat(sdk(server), tools=[WEATHER])
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "tool_calls"
        assert message.content == "Let me check."  # the space before a call is layout
        assert message.tool_calls[0].function.name == "get_weather"
        assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
        chunks = list(chat(sdk(server), tools=[WEATHER], stream=True))
        calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or ())]
        assert [c.function.name for c in calls] == ["get_weather"]
        assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
        # The template got the tools; without tools the same text is just content.
        plain = chat(sdk(server))
        assert plain.choices[0].message.content.endswith("</tool_call>") and not plain.choices[0].message.tool_calls


def test_parallel_tool_calls_false_keeps_the_first_call():
    backend = ToolFake(replies=[CALL + "\n" + CALL.replace("Paris", "Rome")])
    with fake_server(backend) as server:
        both = chat(sdk(server), tools=[WEATHER])
        assert [json.loads(c.function.arguments)["city"] for c in both.choices[0].message.tool_calls] == ["Paris", "Rome"]
        assert both.choices[0].message.content is None
        one = chat(sdk(server), tools=[WEATHER], parallel_tool_calls=False)
        assert len(one.choices[0].message.tool_calls) == 1


XML_TOOL = {"type": "function", "function": {"name": "write_file", "parameters": {"type": "object", "properties": {
    "path": {"type": "string"}, "content": {"type": "string"}, "mode": {"type": "integer"},
    "overwrite": {"type": "boolean"}}, "required": ["path", "content"]}}}
XML_CALL = ("<tool_call>\n<function=write_file>\n<parameter=path>\n007.txt\n</parameter>\n"
            "<parameter=content>\nline one\n  line two\n</parameter>\n<parameter=mode>\n644\n</parameter>\n"
            "<parameter=overwrite>\nfalse\n</parameter>\n</function>\n</tool_call>")


class XmlToolFake(ToolFake):
    """A fake whose template teaches the Qwen3-Coder XML dialect (Qwen3.5 and later)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.info = ModelInfo(name="fake", backend="fake", context_length=self.context_length, supports_tools=True,
                              tool_dialect="xml")


def test_xml_tool_calls_reach_the_sdk_with_typed_arguments():
    backend = XmlToolFake(replies=["Writing it. " + XML_CALL + "\n" + XML_CALL.replace("007.txt", "b.txt")])
    expected = {"path": "007.txt", "content": "line one\n  line two", "mode": 644, "overwrite": False}
    with fake_server(backend) as server:
        reply = chat(sdk(server), tools=[XML_TOOL])
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "tool_calls" and message.content == "Writing it."
        assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
            expected, {**expected, "path": "b.txt"}]
        assert all(c.function.name == "write_file" and c.id.startswith("call_") for c in message.tool_calls)
        chunks = list(chat(sdk(server), tools=[XML_TOOL], stream=True))
        deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or ())]
        assert [d.index for d in deltas] == [0, 1]
        assert json.loads(deltas[0].function.arguments) == expected
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Writing it."
        assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
        # A malformed call is text, not an error.
        backend.replies = ["<tool_call>\n<function=write_file>\noops</tool_call>"]
        broken = chat(sdk(server), tools=[XML_TOOL])
        assert broken.choices[0].finish_reason == "stop" and not broken.choices[0].message.tool_calls
        assert broken.choices[0].message.content == backend.replies[0]


def test_a_forced_choice_gets_the_grammar_of_the_model_s_dialect():
    for backend, head in ((XmlToolFake(replies=[XML_CALL]), "xml-call"), (ToolFake(replies=[CALL]), "tool-call-block")):
        with fake_server(backend) as server:
            chat(sdk(server), tools=[XML_TOOL], tool_choice={"type": "function", "function": {"name": "write_file"}})
            grammar = backend.calls[-1][1].grammar
            assert grammar.startswith(f"root ::= {head}") and "write_file" in grammar


def test_a_forced_call_the_dialect_cannot_write_is_a_400_and_the_server_carries_on():
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a>b": {"type": "string"}}}}}
    with fake_server(XmlToolFake(replies=["fine"])) as server:
        with pytest.raises(openai.BadRequestError) as err:
            chat(sdk(server), tools=[bad], tool_choice="required")
        assert err.value.body["param"] == "tools" and "a>b" in err.value.body["message"]
        assert chat(sdk(server)).choices[0].message.content == "fine"


def test_arguments_that_are_not_a_json_object_are_a_400_naming_the_field():
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "write_file", "arguments": "path=a"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    with fake_server(XmlToolFake()) as server:
        with pytest.raises(openai.BadRequestError) as err:
            sdk(server).chat.completions.create(model="fake", messages=history, tools=[XML_TOOL])
        assert err.value.body["param"] == "messages[1].tool_calls[0].function.arguments"
        history[1]["tool_calls"][0]["function"]["arguments"] = '{"path": "a"}'
        assert sdk(server).chat.completions.create(model="fake", messages=history, tools=[XML_TOOL]).choices


# -- loading and unloading --------------------------------------------------------------------


def test_health_is_503_while_the_first_model_loads():
    release = threading.Event()
    backend = ToolFake()

    def slow_loader(resolved, load, parallel):
        assert release.wait(30)
        return backend

    with fake_server(loader=slow_loader, startup_models=("fake",)) as server:
        response = httpx.get(server.base + "/health")
        assert response.status_code == 503 and response.json() == {"status": "loading"}
        assert httpx.get(server.base + "/api/ps").json()["models"][0]["loading"] is True
        started = time.perf_counter()
        assert httpx.get(server.base + "/v1/models").status_code == 200  # not blocked by the load
        assert time.perf_counter() - started < 1
        release.set()
        assert wait_until(lambda: httpx.get(server.base + "/health").status_code == 200)
        assert chat(sdk(server)).choices[0].message.content == "Hello there."


def test_a_model_that_fails_to_load_at_start_is_reported():
    from qwencli.errors import InvalidModelFile

    def broken(resolved, load, parallel):
        raise InvalidModelFile("llama.cpp could not load /models/x.gguf")

    fatal: list = []
    source = StaticSource({"fake": ResolvedModel(name="fake", format="remote")})
    app = create_app(ServerConfig(startup_models=("fake",)), source, loader=broken, on_fatal=fatal.append)
    with RunningServer(app) as server:
        assert wait_until(lambda: fatal)
        response = httpx.get(server.base + "/health")
        assert response.status_code == 503 and response.json()["status"] == "error"
        with pytest.raises(openai.APIStatusError) as err:
            chat(sdk(server))
        assert err.value.status_code < 500 or err.value.response.headers.get("x-should-retry") == "false"


def test_keep_alive_unloads_an_idle_model_and_qwen_ps_shows_it(isolated_home):
    backend = ToolFake()
    with fake_server(backend, keep_alive=3.0) as server:
        result = run_qwen("ps", "--port", str(server.port))
        assert result.returncode == 0 and result.stdout.decode().split() == ["NAME", "BACKEND", "CONTEXT", "MEMORY",
                                                                            "UNTIL"]
        chat(sdk(server))
        result = run_qwen("ps", "--port", str(server.port))
        lines = result.stdout.decode().splitlines()
        assert lines[0].split() == ["NAME", "BACKEND", "CONTEXT", "MEMORY", "UNTIL"]
        assert lines[1].split()[:3] == ["fake", "fake", "4096"] and "seconds from now" in lines[1]
        as_json = json.loads(run_qwen("ps", "--port", str(server.port), "--json").stdout)
        assert as_json[0]["name"] == "fake" and as_json[0]["until"]
        assert wait_until(lambda: backend.closed, timeout=10)
        assert httpx.get(server.base + "/api/ps").json()["models"] == []
        # A request after the unload loads it again.
        assert chat(sdk(server)).choices[0].message.content == "Hello there."


def test_qwen_ps_without_a_server_is_one_line(isolated_home):
    from qwencli.server.run import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    result = run_qwen("ps", "--port", str(port))
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr and len(result.stderr.decode().strip().splitlines()) <= 2


def test_graceful_shutdown_lets_the_stream_in_flight_finish():
    backend = ToolFake(replies=["one two three four five six seven eight"], delay=0.1)
    with fake_server(backend) as server:
        out: list = []
        runner = threading.Thread(target=_read_stream, args=(server, out))
        runner.start()
        assert wait_until(lambda: backend.calls, timeout=10)
        server.server.should_exit = True  # what SIGTERM does
        runner.join(30)
        status, lines = out[0]
        assert status == 200 and lines[-1] == "data: [DONE]"
        assert not backend.stopped_early.is_set()
        server.thread.join(15)
        assert not server.thread.is_alive()
        assert backend.closed
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.base + "/health")
