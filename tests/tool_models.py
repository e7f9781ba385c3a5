"""The real Qwen3-Coder / Qwen3.5 chat templates (from the llama-cpp-python sdist that `make
models` unpacks into .cache/sdist) and the tiny Qwen models of `tests/fixtures/tiny_qwen.py`
given one of them, so the XML tool-call dialect runs end to end on both backends."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tests.models import MODELS, ROOT, require

LLAMA_SDIST = ROOT / ".cache" / "sdist" / "llama_cpp_python-0.3.36"
TEMPLATES = LLAMA_SDIST / "vendor" / "llama.cpp" / "models" / "templates"
CONFIGS = LLAMA_SDIST / "examples" / "server" / "configs"


def template(name: str) -> str:
    """A template by file name: `Qwen3-Coder.jinja`, or a server config such as `qwen3.6-27b.json`."""
    if name.endswith(".json"):
        return "".join(json.loads(require(CONFIGS / name).read_text())["model"]["chat_template"])
    return require(TEMPLATES / name).read_text()


def build_tiny_with_template(kind: str, arch: str, tokenizer: Path, template_name: str) -> Path:
    """build_tiny's model (GGUF or Hugging Face folder) with `template_name` as its chat template."""
    from tests.fixtures import tiny_qwen

    source = template(template_name)
    key = hashlib.sha256((ROOT / "tests" / "fixtures" / "tiny_qwen.py").read_bytes() + source.encode()).hexdigest()
    folder = MODELS / "tiny-templated" / key[:12]
    stem = f"tiny-{arch}-{Path(template_name).stem.lower()}"
    if kind == "gguf":
        path = folder / f"{stem}.gguf"
        if not path.exists():
            tiny_qwen.write_gguf(path, arch, tokenizer, template=source)
        return path
    path = folder / f"{stem}-hf"
    if not path.exists():
        tmp = folder / f"{stem}-hf.building"
        tiny_qwen.write_hf(tmp, arch, tokenizer)
        config_path = tmp / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["chat_template"] = source
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
        shutil.rmtree(path, ignore_errors=True)
        tmp.replace(path)
    return path
