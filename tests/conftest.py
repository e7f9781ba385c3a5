"""Shared fixtures: the real models and the tests' tiny Qwen models (built by tests/models.py),
an isolated home for every test, and a hub on loopback. Helpers that tests import live in
tests/models.py (paths, builders) and tests/processes.py (`qwen` in other processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import MODELS, QWEN_TOKENIZER, SMOLLM2, build_hybrid, build_tiny, require


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return require(SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_numeric_paths(smollm2) -> dict[str, Path]:
    """The shipped SmolLM2 file and the same weights requantized (Q8_0, F32): other CPUs, simulated."""
    from tests.fixtures.numerics import VARIANTS, variant

    return {"Q4_1 (shipped)": smollm2, **{name: variant(smollm2, name, MODELS / "variants") for name in VARIANTS}}


@pytest.fixture(scope="session")
def qwen_tokenizer() -> Path:
    return require(QWEN_TOKENIZER / "tokenizer.json").parent


@pytest.fixture(scope="session")
def tiny_qwen2_gguf(qwen_tokenizer) -> Path:
    """A tiny Qwen2 GGUF that greedily answers any chat with "Hello world" and stops."""
    return build_tiny("gguf", "qwen2", qwen_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen3_gguf(qwen_tokenizer) -> Path:
    """A tiny Qwen3 GGUF: thinks "Reason", answers "Answer" (just "Answer" without thinking)."""
    return build_tiny("gguf", "qwen3", qwen_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen2_hf(qwen_tokenizer) -> Path:
    """The tiny Qwen2 as a Hugging Face folder (safetensors), for the torch backend."""
    return build_tiny("hf", "qwen2", qwen_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen3_hf(qwen_tokenizer) -> Path:
    return build_tiny("hf", "qwen3", qwen_tokenizer)


@pytest.fixture(scope="session", params=["qwen35", "qwen35moe", "qwen3next"])
def tiny_hybrid_gguf(request, qwen_tokenizer) -> Path:
    """A tiny random-weight hybrid model (Gated DeltaNet + attention) as llama.cpp's converter
    writes it, with Qwen3.5's chat template: once per architecture."""
    return build_hybrid("gguf", request.param, qwen_tokenizer)


@pytest.fixture(scope="session", params=["qwen35", "qwen35moe", "qwen3next"])
def tiny_hybrid_hf(request, qwen_tokenizer) -> Path:
    """The same models as Hugging Face folders (safetensors), for the torch backend."""
    return build_hybrid("hf", request.param, qwen_tokenizer)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own QWEN_HOME and Hugging Face cache; nothing touches the real ones."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("QWEN_HOME", str(home / "qwen"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("QWEN_HOST", raising=False)
    monkeypatch.delenv("QWEN_API_KEY", raising=False)
    monkeypatch.delenv("QWEN_BACKEND", raising=False)
    monkeypatch.delenv("QWEN_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    return home


@pytest.fixture
def hub(monkeypatch):
    """A hub-compatible server on 127.0.0.1 (tests/fixtures/hub.py) with HF_ENDPOINT pointing at it."""
    from tests.fixtures.hub import HubServer

    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()
