"""The relay in front of an engine, in this process on a real uvicorn (tests/serving.py), before the fake
engine (tests/fixtures/fake_engine.py) as a real process: unbuffered streams, the guards, a dead engine."""

from __future__ import annotations

import time

import httpx
import pytest

from qwencli.engines.relay import create_relay_app
from qwencli.server.config import ServerConfig
from tests.fixtures import fake_engine
from tests.serving import RunningServer

pytestmark = pytest.mark.slow  # the engine is a subprocess


@pytest.fixture
def engine():
    proc, base = fake_engine.start({"FAKE_ENGINE_TOKENS": "5", "FAKE_ENGINE_TOKEN_DELAY": "0.2",
                                    "VLLM_API_KEY": "inner"})  # fmt: skip
    yield base
    fake_engine.stop(proc)


def relay(upstream: str, config: ServerConfig | None = None, key: str | None = "inner") -> RunningServer:
    config = config or ServerConfig()
    app = create_relay_app(config, upstream, model="m", engine="vllm", context=4096, upstream_key=key)
    return RunningServer(app).start()


def test_a_stream_is_relayed_as_it_comes(engine):
    server = relay(engine)
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        started = time.monotonic()
        arrivals = []
        with httpx.stream("POST", server.base + "/v1/chat/completions", json=body, timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if '"content": "w' in line:
                    arrivals.append(time.monotonic() - started)
        # Tokens 0.2 s apart arrive 0.2 s apart: nothing waits for the whole answer.
        assert len(arrivals) == 5
        assert arrivals[0] < 0.5 and arrivals[-1] - arrivals[0] > 0.6
    finally:
        server.stop()


def test_the_guards_stand_before_the_engine(engine):
    server = relay(engine, ServerConfig(api_key="outer", max_body_bytes=1000))
    try:
        assert httpx.get(server.base + "/v1/models").status_code == 401
        ok = httpx.get(server.base + "/v1/models", headers={"Authorization": "Bearer outer"})
        assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "fake"  # the engine's own answer
        refused = httpx.get(server.base + "/v1/models", headers={"Authorization": "Bearer outer", "Host": "evil.com"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "host_not_allowed"
        big = httpx.post(server.base + "/v1/chat/completions", content=b"x" * 2000,
                         headers={"Authorization": "Bearer outer"})  # fmt: skip
        assert big.status_code == 413
        assert httpx.get(server.base + "/health").status_code == 200  # open, as for qwen serve
    finally:
        server.stop()


def test_a_dead_engine_is_a_502_in_openai_shape():
    import openai

    proc, base = fake_engine.start()
    fake_engine.stop(proc)
    server = relay(base)
    try:
        client = openai.OpenAI(base_url=server.base + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as error:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert error.value.status_code == 502
        assert error.value.body["code"] == "engine_unavailable"
        assert httpx.get(server.base + "/health").status_code == 503
    finally:
        server.stop()


def test_a_client_that_goes_away_stops_the_engines_stream():
    proc, base = fake_engine.start({"FAKE_ENGINE_TOKENS": "100", "FAKE_ENGINE_TOKEN_DELAY": "0.05"})
    server = relay(base, key=None)
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.stream("POST", server.base + "/v1/chat/completions", json=body, timeout=30) as response:
            for line in response.iter_lines():
                if '"content": "w' in line:
                    break  # leave after the first token; the whole answer would take 5 s
        assert httpx.get(base + "/debug/streams").json()["streaming"] in (0, 1)
        deadline = time.monotonic() + 2.5
        while httpx.get(base + "/debug/streams").json()["streaming"]:
            assert time.monotonic() < deadline, "the engine kept generating for a client that left"
            time.sleep(0.05)
    finally:
        server.stop()
        fake_engine.stop(proc)
