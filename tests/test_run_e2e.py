"""`qwen run` end to end: real llama.cpp, real subprocesses, real models."""

from __future__ import annotations

import json

from tests.conftest import SMOLLM2_SYSTEM, run_qwen


def test_smollm2_answers_paris(smollm2):
    result = run_qwen("run", smollm2, "--system", SMOLLM2_SYSTEM, "--temperature", "0",
                      "What is the capital of France?")
    assert result.returncode == 0, result.stderr.decode()
    assert "Paris" in result.stdout.decode()


def test_tiny_qwen2_stops_at_im_end(tiny_qwen2_gguf):
    result = run_qwen("run", tiny_qwen2_gguf, "--temperature", "0", "--json", "hi")
    record = json.loads(result.stdout)
    assert record["text"] == "Hello world"
    assert record["finish_reason"] == "stop"
    assert record["usage"]["completion_tokens"] == 2
