"""The torch backend through the real `qwen` command, on CPU with the tiny Qwen folders: one-shot,
pipes, --json with thinking, the REPL through a pseudo-terminal, `qwen serve` answering the `openai`
SDK, and `qwen pull --backend torch` from a local hub. A local folder path selects torch."""

from __future__ import annotations

import json
import re

import pytest

from tests.processes import leave_repl, run_qwen, spawn_repl, start_server, stop_server

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def test_one_shot_with_explicit_backend_and_device(tiny_qwen2_hf):
    out = run_qwen("run", tiny_qwen2_hf, "--backend", "torch", "--device", "cpu", "--temperature", "0", "-v", "hi")
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"Hello world\n"
    err = out.stderr.decode()
    assert "· torch ·" in err and "cpu float32" in err and "backend torch: --backend torch" in err


def test_pipe_json_and_thinking(tiny_qwen3_hf):
    out = run_qwen("run", tiny_qwen3_hf, "--json", "--temperature", "0", "Summarize", input="some notes\n")
    assert out.returncode == 0, out.stderr.decode()
    data = json.loads(out.stdout)
    assert (data["reasoning"], data["text"], data["finish_reason"]) == ("Reason", "Answer", "stop")
    assert data["usage"]["completion_tokens"] == 5
    plain = run_qwen("run", tiny_qwen3_hf, "--no-think", "--temperature", "0", "hi")
    assert plain.returncode == 0 and plain.stdout == b"Answer\n", plain.stderr.decode()


def test_json_format_holds_and_llama_backend_on_a_folder_is_a_usage_error(tiny_qwen2_hf):
    fmt = run_qwen("run", tiny_qwen2_hf, "--format", "json", "--temperature", "0", "-n", "8", "hi")
    assert fmt.returncode == 0 and fmt.stdout.startswith(b'{"'), fmt.stderr.decode()  # not "Hello world"
    llama = run_qwen("run", tiny_qwen2_hf, "--backend", "llama", "hi", timeout=30)
    assert llama.returncode == 2 and b"Hugging Face folder" in llama.stderr


def test_repl_remembers_turns_and_exits_on_ctrl_d(tiny_qwen2_hf):
    child = spawn_repl(tiny_qwen2_hf, "--device", "cpu", "--temperature", "0")
    try:
        for _ in range(2):
            child.sendline("hi")
            child.expect(">>> ")
            assert "Hello world" in ANSI.sub("", child.before)
        child.sendline("/show")
        child.expect(">>> ")
        shown = ANSI.sub("", child.before)
        assert "turns        2" in shown and "torch" in shown
        assert leave_repl(child) == 0
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_serve_answers_the_openai_sdk(tiny_qwen2_hf, isolated_home):
    openai = pytest.importorskip("openai")
    server, base = start_server(str(tiny_qwen2_hf), "--backend", "torch", "--device", "cpu")
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)
        assert "tiny-qwen2-hf" in [m.id for m in client.models.list().data]
        messages = [{"role": "user", "content": "hi"}]
        reply = client.chat.completions.create(model="tiny-qwen2-hf", messages=messages, temperature=0)
        assert reply.choices[0].message.content == "Hello world" and reply.choices[0].finish_reason == "stop"
        assert reply.usage.completion_tokens == 2
        stream = client.chat.completions.create(model="tiny-qwen2-hf", messages=messages, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello world"
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                  "additionalProperties": False}
        held = client.chat.completions.create(model="tiny-qwen2-hf", messages=messages, temperature=0, max_tokens=20,
                                              response_format={"type": "json_schema",
                                                               "json_schema": {"name": "r", "schema": schema}})
        assert isinstance(json.loads(held.choices[0].message.content)["ok"], bool)
        tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
            "type": "object", "properties": {"q": {"enum": ["a", "b"]}}, "required": ["q"]}}}]
        called = client.chat.completions.create(model="tiny-qwen2-hf", messages=messages, temperature=0, tools=tools,
                                                tool_choice={"type": "function", "function": {"name": "lookup"}})
        call = called.choices[0].message.tool_calls[0]
        assert call.function.name == "lookup" and json.loads(call.function.arguments)["q"] in ("a", "b")
        assert called.choices[0].finish_reason == "tool_calls"
        with pytest.raises(openai.BadRequestError, match="grammar"):
            client.chat.completions.create(model="tiny-qwen2-hf", messages=messages, response_format={
                "type": "json_schema", "json_schema": {"name": "r", "schema": {"$ref": "#/nowhere"}}})
        again = client.chat.completions.create(model="tiny-qwen2-hf", messages=messages, temperature=0)
        assert again.choices[0].message.content == "Hello world"
    finally:
        stop_server(server)


def test_pull_backend_torch_downloads_only_what_transformers_needs(hub, tiny_qwen2_hf):
    repo = "test/Tiny-Qwen2"
    files = {p.name: p for p in tiny_qwen2_hf.iterdir()}
    files["pytorch_model.bin"] = b"pickle bytes that must never be fetched"
    files["onnx/model.onnx"] = b"not needed"
    hub.add_repo(repo, files)
    out = run_qwen("pull", "--backend", "torch", repo, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert hub.bytes_sent(repo, "pytorch_model.bin") == 0 and hub.bytes_sent(repo, "onnx/model.onnx") == 0
    assert hub.bytes_sent(repo, "model.safetensors") == (tiny_qwen2_hf / "model.safetensors").stat().st_size
    listed = run_qwen("list", "--json", timeout=30)
    assert listed.returncode == 0, listed.stderr.decode()
    assert '"safetensors"' in listed.stdout.decode() and repo in listed.stdout.decode()
    # Downloaded: the repo name now runs on torch, offline, with no request to the hub.
    hub.reset_log()
    ran = run_qwen("run", repo, "--backend", "torch", "--temperature", "0", "hi", env={"HF_HUB_OFFLINE": "1"})
    assert ran.returncode == 0 and ran.stdout == b"Hello world\n", ran.stderr.decode()
    assert hub.log == []


def test_pickle_weights_are_pulled_and_run_only_when_allowed(hub, tiny_qwen2_hf, tmp_path):
    from tests.test_torch_backend import pickled

    folder = pickled(tiny_qwen2_hf, tmp_path / "pickled")
    hub.add_repo("test/Pickled", {p.name: p for p in folder.iterdir()})
    refused = run_qwen("pull", "--backend", "torch", "test/Pickled", timeout=60)
    assert refused.returncode == 1 and b"pickle" in refused.stderr
    assert b"qwen pull --backend torch --allow-pickle test/Pickled" in refused.stderr
    assert hub.bytes_sent("test/Pickled", "pytorch_model.bin") == 0

    pulled = run_qwen("pull", "--backend", "torch", "--allow-pickle", "test/Pickled", timeout=60)
    assert pulled.returncode == 0, pulled.stderr.decode()
    listed = json.loads(run_qwen("list", "--json", timeout=30).stdout)
    rows = listed["models"] if isinstance(listed, dict) else listed
    assert [m["format"] for m in rows if m["repo"] == "test/Pickled"] == ["pickle"]

    no = run_qwen("run", "test/Pickled", "--backend", "torch", "hi", env={"HF_HUB_OFFLINE": "1"})
    assert no.returncode != 0 and b"--allow-pickle" in no.stderr and no.stdout == b""
    yes = run_qwen("run", "test/Pickled", "--backend", "torch", "--allow-pickle", "--temperature", "0", "hi",
                   env={"HF_HUB_OFFLINE": "1"})
    assert yes.returncode == 0 and yes.stdout == b"Hello world\n", yes.stderr.decode()


def test_repo_code_is_pulled_and_run_only_with_trust_remote_code(hub, tiny_qwen2_hf, tmp_path):
    from tests.test_torch_backend import with_remote_code

    folder = with_remote_code(tiny_qwen2_hf, tmp_path / "custom")
    hub.add_repo("test/Custom", {p.name: p for p in folder.iterdir()})
    plain = run_qwen("pull", "--backend", "torch", "test/Custom", timeout=60)
    assert plain.returncode == 0, plain.stderr.decode()
    assert hub.bytes_sent("test/Custom", "modeling_custom.py") == 0  # code is not fetched unasked
    refused = run_qwen("run", "test/Custom", "--backend", "torch", "hi", env={"HF_HUB_OFFLINE": "1"})
    assert refused.returncode != 0 and b"--trust-remote-code" in refused.stderr

    trusted = run_qwen("pull", "--backend", "torch", "--trust-remote-code", "test/Custom", timeout=60)
    assert trusted.returncode == 0, trusted.stderr.decode()
    assert hub.bytes_sent("test/Custom", "modeling_custom.py") > 0
    ran = run_qwen("run", "test/Custom", "--backend", "torch", "--trust-remote-code", "--temperature", "0", "hi",
                   env={"HF_HUB_OFFLINE": "1"})
    assert ran.returncode == 0 and ran.stdout == b"Hello world\n", ran.stderr.decode()
