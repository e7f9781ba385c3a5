"""`qwen serve` as a real subprocess: start-up, refusals, the local store, SIGTERM."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.models import ROOT
from tests.processes import QWEN, run_qwen

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HI = [{"role": "user", "content": "hi"}]


def read_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    """One line of the child's stdout, or fail after `timeout` (never hang the suite)."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if not selector.select(max(deadline - time.monotonic(), 0)):
            raise AssertionError(f"no line from qwen serve within {timeout} s; got {line!r}")
        byte = os.read(proc.stdout.fileno(), 1)
        if not byte:
            break
        line += byte
    return line.decode()


class Serve:
    """`qwen serve ARGS… --port 0`, its URL from the first line it prints."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([*QWEN, "serve", *map(str, args), "--port", "0"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                     env={**os.environ, **(env or {})})
        first = read_line(self.proc)
        assert first.startswith("http://127.0.0.1:") and first.rstrip().endswith("/v1"), first
        self.url = first.strip()
        self.base = self.url.removesuffix("/v1")
        self.port = int(self.base.rsplit(":", 1)[1])

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            time.sleep(0.05)
        raise AssertionError("the server did not become ready")

    def client(self, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=kwargs.pop("api_key", "unused"), max_retries=0,
                             timeout=60, **kwargs)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError("qwen serve did not stop on SIGTERM")
        return self.proc.returncode, err.decode()


def test_port_0_prints_the_port_and_sigterm_lets_the_stream_in_flight_finish(smollm2):
    serve = Serve(smollm2, "--keep-alive", "-1")
    try:
        serve.wait_ready()
        client = serve.client()
        assert [m.id for m in client.models.list()] == [smollm2.stem]
        pieces: list[str] = []
        finish: list = []

        def stream() -> None:
            for chunk in client.chat.completions.create(
                    model=smollm2.stem, temperature=0, max_tokens=60, stream=True,
                    messages=[{"role": "user", "content": "Count from 1 to 100."}]):
                if chunk.choices:
                    pieces.append(chunk.choices[0].delta.content or "")
                    finish.append(chunk.choices[0].finish_reason)

        reader = threading.Thread(target=stream)
        reader.start()
        deadline = time.monotonic() + 30
        while len(pieces) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(pieces) >= 3
        serve.proc.send_signal(signal.SIGTERM)
        reader.join(60)
        status, err = serve.stop()
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
    assert status == 0, err
    assert finish[-1] == "length"  # all 60 tokens came, then the server exited
    assert "Traceback" not in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(serve.base + "/health")


def test_address_in_use_is_one_line_and_non_zero(tiny_qwen2_gguf):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_qwen("serve", tiny_qwen2_gguf, "--port", str(port), timeout=60)
    assert result.returncode != 0
    err = result.stderr.decode().strip()
    assert "already in use" in err and "Traceback" not in err
    assert len(err.splitlines()) <= 2  # the error and its hint
    assert result.stdout == b""


def test_non_loopback_host_without_a_key_is_refused(tiny_qwen2_gguf):
    result = run_qwen("serve", tiny_qwen2_gguf, "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert result.returncode == 2
    assert "API key" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_bad_keep_alive_is_a_usage_error():
    result = run_qwen("serve", "--keep-alive", "soon", timeout=60)
    assert result.returncode == 2 and "--keep-alive" in result.stderr.decode()


def test_unknown_start_up_model_fails_before_listening():
    result = run_qwen("serve", "no-such-model-anywhere", "--port", "0", timeout=60)
    assert result.returncode == 1 and result.stdout == b""
    assert "Traceback" not in result.stderr.decode()


def _store(hf_home: Path, gguf: Path) -> str:
    """`gguf` placed in the Hugging Face cache as a catalog model; its store name."""
    repo = hf_home / "hub" / "models--Qwen--Qwen1.5-0.5B-Chat-GGUF"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copyfile(gguf, snapshot / "qwen1_5-0_5b-chat-q4_k_m.gguf")
    return "qwen1.5-0.5b:q4_k_m"


def test_store_models_load_on_first_request_others_are_404_and_never_downloaded(tiny_qwen2_gguf, isolated_home):
    name = _store(isolated_home / "hf", tiny_qwen2_gguf)
    # An unreachable hub: a download attempt would fail loudly, not hang.
    serve = Serve("--api-key", "k", "--keep-alive", "-1", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    try:
        serve.wait_ready()  # nothing to load at start: ready at once
        client = serve.client(api_key="k")
        assert name in [m.id for m in client.models.list()]
        ps = run_qwen("ps", "--port", str(serve.port), "--api-key", "k")
        assert ps.stdout.decode().split() == ["NAME", "BACKEND", "CONTEXT", "MEMORY", "UNTIL"]
        reply = client.chat.completions.create(model=name, messages=HI, temperature=0, max_tokens=8)
        assert reply.choices[0].message.content == "Hello world"
        same = client.chat.completions.create(model="qwen1.5-0.5b", messages=HI, temperature=0, max_tokens=8)
        assert same.choices[0].message.content == "Hello world"
        ps = run_qwen("ps", "--port", str(serve.port), "--api-key", "k", "--json")
        loaded = json.loads(ps.stdout)
        assert len(loaded) == 1 and loaded[0]["backend"] == "llama.cpp" and loaded[0]["until"] is None
        for missing in ("qwen2.5-7b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", str(tiny_qwen2_gguf)):
            with pytest.raises(openai.NotFoundError) as err:
                client.chat.completions.create(model=missing, messages=HI, max_tokens=2)
            assert err.value.code == "model_not_found"
        assert not list((isolated_home / "hf" / "hub").glob("models--Qwen--Qwen2.5*"))
        status, err = serve.stop()
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
    assert status == 0
    assert "k" not in [w.strip(",.:") for w in err.split()]  # the key is never logged
