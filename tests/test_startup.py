"""`qwen --help` and Tab completion start fast: nothing heavy is imported on those paths, checked
in a fresh interpreter. Committed completion scripts match what the app generates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import ROOT

HEAVY = ("llama_cpp", "torch", "transformers", "fastapi", "uvicorn", "numpy", "gguf", "huggingface_hub",
         "prompt_toolkit", "jinja2", "httpx", "openai")

PROBE = """
import json, sys
sys.argv = {argv!r}
try:
    from qwencli.cli import main
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)), file=sys.stderr)
"""


def imported_by(argv: list[str], env: dict | None = None) -> set[str]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT, timeout=60)
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["qwen", "--help"], ["qwen", "run", "--help"], ["qwen"]])
def test_help_imports_nothing_heavy(argv):
    assert not imported_by(argv) & set(HEAVY)


def test_tab_completion_imports_nothing_heavy():
    env = {"_QWEN_COMPLETE": "complete_bash", "COMP_WORDS": "qwen run --te", "COMP_CWORD": "2"}
    assert not imported_by(["qwen"], env) & set(HEAVY)


@pytest.mark.parametrize("prog", ["qwen", "qwencli"])
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completions_are_current(prog, shell):
    committed = ROOT / "completions" / f"{prog}.{shell}"
    env = {**os.environ, f"_{prog.upper()}_COMPLETE": f"source_{shell}"}
    fresh = subprocess.run([str(Path(sys.executable).parent / prog)], capture_output=True, text=True, env=env,
                           timeout=60).stdout
    assert committed.read_text() == fresh, "completions are stale: run `make completions`"
