"""The remote backend: `qwen run --host` against a real `qwen serve` (real SmolLM2 on loopback), and
hosted names against a loopback imitation of the hosted API's behaviour, including its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.fixtures.openai_fake import Failure, FakeOpenAI, Reply
from tests.greedy import PARIS as PARIS_ANSWER
from tests.greedy import SYSTEM
from tests.models import ROOT
from tests.processes import QWEN, leave_repl, run_qwen, spawn_repl, start_server, stop_server

pytestmark = pytest.mark.slow

KEY = "sk-test-secret-4242"
PARIS = ("-s", SYSTEM, "--temperature", "0", PARIS_ANSWER.question)


@pytest.fixture(scope="module")
def served(smollm2):
    proc, url = start_server(str(smollm2))
    yield url, smollm2.name.removesuffix(".gguf")
    stop_server(proc)


@pytest.fixture
def api():
    with FakeOpenAI() as server:
        yield server


def hosted_env(api: FakeOpenAI, **extra: str) -> dict:
    return {"DASHSCOPE_API_KEY": KEY, "QWEN_DASHSCOPE_BASE_URL": api.url + "/compatible-mode/v1", **extra}


def out(result) -> str:
    return result.stdout.decode()


def err(result) -> str:
    return result.stderr.decode()


# -- against a real qwen serve ---------------------------------------------------------------

def test_host_answers_like_the_local_model(served, smollm2):
    url, model = served
    remote = run_qwen("run", "--host", url, model, *PARIS)
    local = run_qwen("run", smollm2, *PARIS)
    assert remote.returncode == 0, err(remote)
    assert "Paris" in out(remote)
    assert out(remote) == out(local)  # greedy: same text through the server as in-process
    assert out(remote).endswith("\n") and out(remote).count("\n") == 1


def test_host_from_environment_pipes_and_json(served):
    url, model = served
    result = run_qwen("run", model, "--json", "-s", SYSTEM, "--temperature", "0", "-n", "12",
                      input=PARIS_ANSWER.question, env={"QWEN_HOST": url})
    assert result.returncode == 0, err(result)
    record = json.loads(out(result))
    assert "Paris" in record["text"]
    assert record["usage"]["prompt_tokens"] > 10  # the server's true count, from its usage chunk
    assert 0 < record["usage"]["completion_tokens"] <= 12
    assert record["timings"]["first_token_seconds"] > 0


def test_host_format_json_is_constrained(served):
    url, model = served
    result = run_qwen("run", "--host", url, model, "--format", "json", "--temperature", "0", "-n", "200",
                      "Describe a cat as a JSON object with keys name and color.")
    assert result.returncode == 0, err(result)
    assert isinstance(json.loads(out(result)), dict)


def test_host_verbose_statistics_on_stderr(served):
    url, model = served
    result = run_qwen("run", "--host", url, model, "--verbose", "-n", "8", "Hi")
    assert result.returncode == 0, err(result)
    assert "first token" in err(result) and "t/s" in err(result)
    assert "first token" not in out(result)


def test_list_host_shows_served_models(served):
    url, model = served
    result = run_qwen("list", "--host", url)
    assert result.returncode == 0, err(result)
    assert model in out(result)
    listed = json.loads(out(run_qwen("list", "--host", url, "--json")))
    assert [m["id"] for m in listed] == [model]


def test_unknown_model_on_host_names_what_it_serves(served):
    url, model = served
    result = run_qwen("run", "--host", url, "SmolLM", "hi")
    assert result.returncode == 1
    assert "does not serve 'SmolLM'" in err(result) and model in err(result)
    assert out(result) == ""


def test_host_with_api_key(smollm2):
    proc, url = start_server(str(smollm2), "--api-key", KEY)
    try:
        model = smollm2.name.removesuffix(".gguf")
        refused = run_qwen("run", "--host", url, model, "hi")
        assert refused.returncode == 1 and "refused the API key (401)" in err(refused)
        assert "QWEN_API_KEY" in err(refused)
        ok = run_qwen("run", "--host", url, model, "-n", "4", "hi", env={"QWEN_API_KEY": KEY})
        assert ok.returncode == 0, err(ok)
        assert out(ok).strip()
        assert KEY not in err(ok) + out(ok) + err(refused)
    finally:
        stop_server(proc)


def test_repl_through_pty(served):
    url, model = served
    child = spawn_repl("--host", url, model, "--system", SYSTEM, "--temperature", "0")
    try:
        child.sendline(PARIS_ANSWER.question)
        child.expect(">>> ")
        assert "Paris" in child.before
        child.sendline("/show")
        child.expect(">>> ")
        assert "remote" in child.before
        assert leave_repl(child) == 0
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_serve_fronts_a_hosted_model(api):
    """`qwen serve qwen-max` relays to the hosted API; clients of qwen serve reach it through one place."""
    openai = pytest.importorskip("openai")
    api.script(Reply(pieces=["Bonjour", "!"]))
    proc, url = start_server("qwen-max", env=hosted_env(api))
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        answer = client.chat.completions.create(model="qwen-max", messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content == "Bonjour!"
        api.script(Reply(reasoning=["hmm"], pieces=["Sa", "lut"]))
        stream = client.chat.completions.create(model="qwen-max", messages=[{"role": "user", "content": "Hi"}],
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Salut"
        assert chunks[-1].usage.completion_tokens == 3  # the hosted API's count, passed through
        reasoning = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices]
        assert "".join(r or "" for r in reasoning) == "hmm"
        assert api.chat_requests()[-1].headers["authorization"] == f"Bearer {KEY}"
        with pytest.raises(openai.NotFoundError):  # not named at start: never relayed
            client.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "Hi"}])
    finally:
        stop_server(proc)


# -- hosted names, against the imitation ---------------------------------------------------------

def test_hosted_name_sends_model_key_and_options(api):
    api.script(Reply(pieces=["Par", "is", "."]))
    result = run_qwen("run", "qwen2.5-max", "--temperature", "0.2", "--top-k", "5", "--no-think", "Capital?",
                      env=hosted_env(api))
    assert result.returncode == 0, err(result)
    assert out(result) == "Paris.\n"
    [request] = api.chat_requests()
    assert request.path == "/compatible-mode/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.body
    assert body["model"] == "qwen-max-2025-01-25"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2 and body["top_k"] == 5
    assert body["enable_thinking"] is False  # Model Studio's switch, a top-level field
    assert "top_p" not in body  # unset options are the server's to choose
    assert KEY not in out(result) + err(result)


def test_missing_key_names_the_variable(api):
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    result = subprocess.run([*QWEN, "run", "qwen-max", "hi"], capture_output=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    assert "DASHSCOPE_API_KEY" in err(result) and out(result) == ""
    assert api.requests == []


def test_reasoning_is_split_from_the_answer(api):
    api.script(Reply(reasoning=["Let me think", "…"], pieces=["42"]),
               Reply(pieces=["<think>\nhmm\n</think>\n\n", "Forty", "-two"]))
    shown = run_qwen("run", "qwen-plus", "--think", "Answer?", env=hosted_env(api))
    assert shown.returncode == 0, err(shown)
    assert out(shown) == "42\n"
    assert "Let me think…" in err(shown)  # thinking goes to stderr when piped
    inline = run_qwen("run", "qwen-plus", "--json", "Answer?", env=hosted_env(api))
    record = json.loads(out(inline))
    assert record["text"] == "Forty-two" and record["reasoning"] == "hmm"


def test_rate_limit_is_retried_honouring_retry_after(api):
    api.script(Failure(429, "slow down", retry_after="1"), Reply(pieces=["ok"]))
    started = time.monotonic()
    result = run_qwen("run", "qwen-turbo", "hi", env=hosted_env(api))
    assert result.returncode == 0, err(result)
    assert out(result) == "ok\n"
    assert len(api.chat_requests()) == 2
    assert time.monotonic() - started >= 1.0
    assert "rate-limited (429); retrying in 1 s" in err(result)


def test_rate_limit_gives_up_after_bounded_attempts(api):
    api.script(*[Failure(429, "quota exceeded", retry_after="0")] * 6)
    result = run_qwen("run", "qwen-turbo", "hi", env=hosted_env(api))
    assert result.returncode == 1
    assert "still rate-limiting" in err(result) and "quota exceeded" in err(result)
    assert len(api.chat_requests()) == 4
    assert out(result) == ""


@pytest.mark.parametrize(
    "failure, expected",
    [
        (Failure(401, f"Incorrect API key provided: {KEY}"), "refused the API key (401)"),
        (Failure(404, "The model `qwen-max` does not exist"), "has no model 'qwen-max' (404)"),
        (Failure(500, "internal error"), "failed with 500: internal error"),
        (Failure(400, "Range of input length should be [1, 30720]; context length exceeded"), "does not fit"),
    ],
)
def test_http_errors_are_one_clear_line(api, failure, expected):
    api.script(failure)
    result = run_qwen("run", "qwen-max", "hi", env=hosted_env(api))
    assert result.returncode == 1
    assert expected in err(result)
    assert "Traceback" not in err(result)
    assert err(result).startswith("Error: ") and len(err(result).splitlines()) <= 2
    assert KEY not in err(result)  # even when the server echoes it
    assert out(result) == ""


def test_connection_refused(api):
    url = api.url
    api.__exit__()
    result = run_qwen("run", "--host", url, "tiny-model", "hi")
    assert result.returncode == 1
    assert "cannot connect to" in err(result) and "Traceback" not in err(result)


def test_stream_cut_midway_is_an_error_not_an_answer(api):
    api.script(Reply(pieces=["The", " answer", " is", " 4", "2"], cut_after=2))
    result = run_qwen("run", "qwen-max", "--json", "hi", env=hosted_env(api))
    assert result.returncode == 1
    assert "before the answer was complete" in err(result)
    assert out(result) == ""  # no JSON record claiming a complete answer
    api.script(Reply(pieces=["The", " answer", " is"], cut_after=2))
    plain = run_qwen("run", "qwen-max", "hi", env=hosted_env(api))
    assert plain.returncode == 1
    assert not out(plain).endswith("\n")  # the partial text is not finished off as if complete


def test_in_band_error_after_the_stream_started(api):
    api.script(Reply(pieces=["a", "b", "c"], error_after=1))
    result = run_qwen("run", "qwen-max", "hi", env=hosted_env(api))
    assert result.returncode == 1
    assert "the model crashed" in err(result)


def test_ctrl_c_closes_the_stream(api):
    api.script(Reply(pieces=[f"w{i} " for i in range(200)], delay=0.05))
    proc = subprocess.Popen([*QWEN, "run", "qwen-max", "hi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, **hosted_env(api)})
    try:
        assert proc.stdout.read(3) == b"w0 "  # streaming has begun
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not api.chat_requests()[-1].disconnected:
        time.sleep(0.1)
    assert api.chat_requests()[-1].disconnected  # the server saw us go, and stopped
    assert b"Traceback" not in proc.stderr.read()


def test_bad_urls_are_usage_errors():
    for url in ("ftp://example.com", "http://user:pw@127.0.0.1:1", "http://127.0.0.1:99999"):
        result = run_qwen("run", "--host", url, "m", "hi")
        assert result.returncode == 2, (url, err(result))
        assert "Error:" in err(result) and "pw" not in err(result)


# -- the client at its seam ------------------------------------------------------------------

def _client(api: FakeOpenAI, **kwargs):
    from qwencli.backends.openai_client import OpenAIClient
    from qwencli.resolved import Endpoint

    return OpenAIClient(Endpoint(base_url=api.url + "/v1", model="qwen-max", provider="openai", api_key=KEY), **kwargs)


def test_a_server_that_stalls_mid_stream_times_out(api):
    from qwencli.errors import QwenError

    api.script(Reply(pieces=["a", "b", "c"], delay=2.0))
    client = _client(api, read_timeout=0.5)
    with pytest.raises(QwenError, match="cut before the answer was complete"):
        list(client.stream("chat/completions", {"model": "qwen-max", "messages": []}))
    client.close()


def test_retry_after_parsing():
    from qwencli.backends.openai_client import MAX_WAIT, retry_after

    assert retry_after("3", default=1) == 3
    assert retry_after(None, default=1.5) == 1.5
    assert retry_after("-5", default=1) == 0
    assert retry_after("100000", default=1) == MAX_WAIT
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", default=1) == 0  # a date in the past
    assert retry_after("soon", default=2) == 2


def test_backend_stops_reading_when_closed(api):
    """Closing the chunk iterator (Ctrl-C, a closed pipe) closes the connection at once."""
    from qwencli.backends.remote import RemoteBackend
    from qwencli.chat import GenerationOptions, Message
    from qwencli.resolved import Endpoint, ResolvedModel

    api.script(Reply(pieces=[f"w{i}" for i in range(100)], delay=0.05))
    endpoint = Endpoint(base_url=api.url + "/v1", model="qwen-max", provider="openai", api_key=KEY)
    backend = RemoteBackend(ResolvedModel(name="qwen-max", format="remote", endpoint=endpoint))
    stream = backend.chat([Message("user", "hi")], GenerationOptions())
    assert next(stream).text == "w0"
    stream.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not api.chat_requests()[-1].disconnected:
        time.sleep(0.05)
    assert api.chat_requests()[-1].disconnected
    backend.close()
