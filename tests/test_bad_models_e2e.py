"""Bad model files through `qwen run`: one clear line on stderr, exit 1, no traceback, no crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import tiny_qwen
from tests.processes import run_qwen
from tests.test_gguf_file import write_tiny_gguf

pytestmark = pytest.mark.slow

PWNED = Path("/tmp/qwencli-template-pwned")
WIDE_SECTIONS = (5, 6, 6, 0)
HOSTILE = "{{ cycler.__init__.__globals__.os.popen('touch " + str(PWNED) + "').read() }}"


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, smollm2, qwen_tokenizer):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.gguf").write_text("These are my notes, not a model.\n")
    (folder / "dir.gguf").mkdir()
    with open(smollm2, "rb") as src:
        (folder / "truncated.gguf").write_bytes(src.read(smollm2.stat().st_size // 3))
    write_tiny_gguf(folder / "alien.gguf", "alienformer")
    write_tiny_gguf(folder / "empty-llama.gguf", "llama")  # valid header, but no real weights
    tiny_qwen.write_gguf(folder / "hostile.gguf", "qwen2", qwen_tokenizer, template=HOSTILE)
    # 17 M-RoPE dimensions for 16-dimensional heads: llama.cpp loads it, then GGML_ASSERTs (status 134).
    tiny_qwen.write_gguf(folder / "mrope-wide.gguf", "qwen2", qwen_tokenizer, gguf_arch="qwen2vl",
                         rope_sections=WIDE_SECTIONS)
    (folder / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
    return folder


@pytest.mark.parametrize("name,message", [
    ("notes.gguf", "is not a GGUF file"),
    ("dir.gguf", "is a directory"),
    ("truncated.gguf", "is truncated"),
    ("alien.gguf", "architecture 'alienformer' is not supported"),
    ("empty-llama.gguf", "llama.cpp could not load empty-llama.gguf"),
    ("hostile.gguf", "tried an unsafe operation"),
    ("mrope-wide.gguf", "M-RoPE sections (5 + 6 + 6 + 0 = 17) are wider than its attention heads (16 dimensions)"),
    ("weights.safetensors", "torch backend"),
])
def test_bad_model_is_one_clear_error(bad_models, name, message):
    PWNED.unlink(missing_ok=True)
    result = run_qwen("run", bad_models / name, "hi", timeout=60)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert result.stdout == b""
    assert not PWNED.exists()


def test_prompt_longer_than_a_fixed_context(tiny_qwen2_gguf):
    result = run_qwen("run", tiny_qwen2_gguf, "--ctx", "256", input="word " * 2000)
    assert result.returncode == 1
    assert "context holds 256" in result.stderr.decode() and "--ctx" in result.stderr.decode()


def test_long_prompt_raises_the_default_context(tiny_qwen2_gguf):
    # 20k tokens: beyond the 8192 default, within the trained 32k — no error, no silent cut.
    result = run_qwen("run", tiny_qwen2_gguf, "--json", "--verbose", input="word " * 20000, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert b"context raised to" in result.stderr


def test_a_native_abort_prints_no_backtrace_unless_debugging(bad_models):
    """The same file straight into llama.cpp (past qwen's check): ggml aborts. As qwen sets it up,
    that is ggml's one assert line, not pages of gdb output; QWEN_DEBUG=1 keeps the backtrace."""
    script = (
        "import sys\n"
        "from qwencli.cli.errors import quiet_native_aborts\n"
        "quiet_native_aborts()\n"
        "import llama_cpp\n"
        "llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, verbose=False)\n"
        "llm.eval(llm.tokenize(b'hi'))\n")
    from tests.models import ROOT

    model = str(bad_models / "mrope-wide.gguf")
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GGML_NO_BACKTRACE", "QWEN_DEBUG")}
    def run(**extra):
        return subprocess.run([sys.executable, "-c", script, model], capture_output=True, text=True, timeout=120,
                              env={**env, **extra}, cwd=ROOT)

    quiet = run()
    assert quiet.returncode != 0 and "GGML_ASSERT" in quiet.stderr
    assert "#0 " not in quiet.stderr and quiet.stderr.count("\n") < 40, quiet.stderr
    debugging = run(QWEN_DEBUG="1")
    assert debugging.returncode != 0 and debugging.stderr.count("\n") > quiet.stderr.count("\n")
