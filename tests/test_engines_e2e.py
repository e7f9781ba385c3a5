"""`qwen serve --engine` end to end against a fake engine (tests/fixtures/fake_engine.py) on PATH and
PYTHONPATH: the real `qwen` process, the real relay on loopback, the official `openai` client.

What cannot run here (no GPU): a real vLLM/SGLang; `test_real_vllm` is written for a CUDA machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures import fake_engine
from tests.models import ROOT
from tests.processes import QWEN

pytestmark = pytest.mark.slow

MODEL = "qwen2.5-0.5b"
MACHINE = ("--gpus", "1", "--gpu-memory", "24GB")
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                              "parameters": {"type": "object",
                                                             "properties": {"city": {"type": "string"}}}}}]


class Engine:
    """One `qwen serve --engine` process; `url` once it printed its address."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None, engine: str = "vllm"):
        bin_dir, py_dir = fake_engine.install(tmp / "fake")
        self.record = tmp / "record.json"
        self.log = tmp / "engine.log"
        self.stderr_path = tmp / "stderr.txt"
        full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "PYTHONPATH": os.pathsep.join([str(py_dir), str(ROOT)]),
                    "FAKE_ENGINE_RECORD": str(self.record), **(env or {})}  # fmt: skip
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [*QWEN, "serve", MODEL, "--engine", engine, *MACHINE, "--port", "0", "--log-file", str(self.log),
             "--start-timeout", "20", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, env=full_env, cwd=ROOT, text=True,
        )  # fmt: skip
        self.url: str | None = None

    def wait_url(self, timeout: float = 60) -> str:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not lines or not lines[0].startswith("http"):
            self.proc.kill()
            pytest.fail("qwen serve --engine printed no address: " + self.stderr_text())
        self.url = lines[0].strip()
        return self.url

    def stderr_text(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return self.stderr_path.read_text()

    def recorded(self) -> dict:
        deadline = time.monotonic() + 30
        while not self.record.exists() or not self.record.read_text():
            if time.monotonic() > deadline:
                pytest.fail("the fake engine never started")
            time.sleep(0.05)
        return json.loads(self.record.read_text())

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.stderr.close()


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that will never reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def gone(*pids: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def relay(tmp_path):
    engine = Engine(tmp_path, "--api-key", "front-key", env={"FAKE_ENGINE_DELAY": "1"})
    engine.wait_url()
    yield engine
    if engine.proc.poll() is None:
        engine.proc.send_signal(signal.SIGTERM)
        engine.wait()


def test_relay_through_the_openai_client(relay):
    import openai

    client = openai.OpenAI(base_url=relay.url, api_key="front-key", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "w0 w1 w2 w3 w4 "
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == "w0 w1 w2 w3 w4 " and len(pieces) == 5
    called = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "weather?"}],
                                            tools=WEATHER)
    [call] = called.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    streamed = [c for c in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "w"}],
                                                          tools=WEATHER, stream=True)]
    assert any(c.choices and c.choices[0].delta.tool_calls for c in streamed)
    with pytest.raises(openai.BadRequestError) as error:  # the engine's own error, passed through in its shape
        client.chat.completions.create(model="bad", messages=[{"role": "user", "content": "hi"}])
    assert error.value.body["message"] == "The model `bad` does not exist."
    # The front door's key is ours; the engine has its own, which only the relay knows.
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=relay.url, api_key="wrong", max_retries=0).models.list()
    record = relay.recorded()
    engine_key = record["env"]["VLLM_API_KEY"]
    assert engine_key and engine_key != "front-key" and engine_key not in record["argv"]
    port = record["argv"][record["argv"].index("--port") + 1]
    assert record["argv"][record["argv"].index("--host") + 1] == "127.0.0.1"
    with pytest.raises(openai.AuthenticationError):  # around the front door without the engine's key
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="front-key", max_retries=0).models.list()


def test_command_and_environment_reach_the_engine(relay):
    record = relay.recorded()
    argv = record["argv"]
    assert argv[1:4] == ["serve", "Qwen/Qwen2.5-0.5B-Instruct", "--tensor-parallel-size"]
    assert "--tool-call-parser" in argv and argv[argv.index("--tool-call-parser") + 1] == "hermes"
    assert "--reasoning-parser" not in argv  # Qwen2.5 never thinks
    assert record["env"]["HF_HUB_CACHE"].endswith("hub")  # our store, so vLLM reads the same files


def test_ps_and_health_through_the_relay(relay):
    import httpx

    base = relay.url.removesuffix("/v1")
    assert httpx.get(base + "/health").status_code == 200
    ps = httpx.get(base + "/api/ps", headers={"Authorization": "Bearer front-key"}).json()
    assert [m["name"] for m in ps["models"]] == [MODEL] and ps["models"][0]["backend"] == "vllm"


def test_qwen_list_and_run_with_host_work_against_the_relay(relay):
    from tests.processes import run_qwen

    env = {"QWEN_API_KEY": "front-key"}
    listed = run_qwen("list", "--host", relay.url, env=env, timeout=60)
    assert listed.returncode == 0 and MODEL in listed.stdout.decode()
    ran = run_qwen("run", MODEL, "hi", "--host", relay.url, env=env, timeout=60)
    assert ran.returncode == 0, ran.stderr.decode()
    assert ran.stdout.decode().strip() == "w0 w1 w2 w3 w4"


def test_qwen_logs_prints_the_engine_log(tmp_path):
    from tests.processes import run_qwen

    logs = Path(os.environ["QWEN_HOME"]) / "logs"
    logs.mkdir(parents=True)
    (logs / "vllm.log").write_text("".join(f"line {i}\n" for i in range(100)))
    result = run_qwen("logs", "vllm", "-n", "3")
    assert result.returncode == 0 and result.stdout.decode() == "line 97\nline 98\nline 99\n"
    assert run_qwen("logs", "sglang").returncode == 2  # none yet: says how to start one


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_serving_stops_the_engine_and_its_workers(relay, sig):
    record = relay.recorded()
    assert alive(record["pid"]) and alive(record["worker"])
    relay.proc.send_signal(sig)
    assert relay.wait() == 0
    assert gone(record["pid"], record["worker"]), "the engine or its worker outlived qwen serve"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_the_engine_loads(tmp_path, sig):
    engine = Engine(tmp_path, env={"FAKE_ENGINE_DELAY": "60"})
    record = engine.recorded()
    time.sleep(0.3)
    engine.proc.send_signal(sig)
    assert engine.wait() == 0
    assert gone(record["pid"], record["worker"])


def test_a_crash_is_reported_with_the_log_tail(tmp_path):
    engine = Engine(tmp_path, env={"FAKE_ENGINE_CRASH": "1"})
    assert engine.wait() == 1
    stderr = engine.stderr_text()
    assert "exited with status 3" in stderr and "CUDA out of memory (fake)" in stderr
    assert "CUDA out of memory (fake)" in engine.log.read_text()  # the whole log is in the file


def test_a_hang_hits_the_start_timeout(tmp_path):
    engine = Engine(tmp_path, "--start-timeout", "1.5", env={"FAKE_ENGINE_HANG": "1"})
    started = time.monotonic()
    assert engine.wait() == 1
    assert time.monotonic() - started < 20
    assert "did not answer" in engine.stderr_text()
    assert gone(engine.recorded()["pid"])


def test_a_crash_while_serving_ends_qwen_serve(relay):
    record = relay.recorded()
    os.kill(record["pid"], signal.SIGKILL)
    assert relay.wait() == 1
    assert "exited with status -9" in relay.stderr_text()


def test_sglang_direct(tmp_path):
    import openai

    engine = Engine(tmp_path, "--direct", engine="sglang")
    url = engine.wait_url()
    argv = engine.recorded()["argv"]
    assert argv[argv.index("--model-path") + 1] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert argv[argv.index("--tool-call-parser") + 1] == "qwen25"
    assert url == f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/v1"  # the engine itself
    reply = openai.OpenAI(base_url=url, api_key="x", max_retries=0).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.wait() == 0


def test_a_missing_engine_is_one_line_with_the_install_command(tmp_path):
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}
    result = subprocess.run([*QWEN, "serve", MODEL, "--engine", "vllm", *MACHINE], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'qwencli[vllm]'" in result.stderr


@pytest.mark.cuda
def test_real_vllm(tmp_path):
    """On a CUDA machine with vLLM installed: a real `vllm serve` of Qwen2.5-0.5B-Instruct behind the relay,
    a tool call through the official client."""
    import shutil

    if shutil.which("vllm") is None or not Path("/dev/nvidia0").exists():
        pytest.skip("needs vLLM and a CUDA GPU")
    import openai

    proc = subprocess.Popen([*QWEN, "serve", MODEL, "--engine", "vllm", "--port", "0"], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)  # fmt: skip
    try:
        url = proc.stdout.readline().strip()
        client = openai.OpenAI(base_url=url, api_key="x")
        reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                               tools=WEATHER, temperature=0)
        assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
