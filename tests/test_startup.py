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
         "prompt_toolkit", "jinja2", "httpx", "openai", "pydantic")

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


@pytest.mark.parametrize("argv", [["qwen", "--help"], ["qwen", "run", "--help"], ["qwen"],
                                  ["qwen", "eval", "ppl", "--help"], ["qwen", "bench", "--help"]])
def test_help_imports_nothing_heavy(argv):
    assert not imported_by(argv) & set(HEAVY)


#: IFEval's checkers and what they pull (~2 s of imports): only for `qwen eval gen --task ifeval`.
IFEVAL = ("lm_eval", "nltk", "langdetect", "immutabledict", "punkt")


def test_eval_gen_help_imports_no_ifeval_checker():
    assert not imported_by(["qwen", "eval", "gen", "--help"]) & set(IFEVAL)


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


#: Never on a one-shot run of a local GGUF: the server, torch, the hub client, the `gguf` package
#: (numpy just to read metadata: `formats/gguf.py` reads the header with `struct`), pydantic (Typer
#: 0.29 validates every option through it: pinned below that), and llama-cpp-python's high-level
#: `Llama` layer with its diskcache/sqlite3 (`backends/llama_lib.py` loads only the C binding).
NOT_ON_ONESHOT = ("torch", "transformers", "fastapi", "uvicorn", "starlette", "huggingface_hub", "gguf", "httpx",
                  "openai", "prompt_toolkit", "pydantic", "diskcache", "sqlite3", *IFEVAL)

ONESHOT_PROBE = """
import json, sys

class FirstEngineImport:
    # Notes what was imported before llama_cpp: numpy there would be ours, not the engine's.
    before = None

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "llama_cpp" and cls.before is None:
            cls.before = sorted({m.split(".")[0] for m in sys.modules})
        return None

sys.meta_path.insert(0, FirstEngineImport)
sys.argv = ARGV
try:
    from qwencli.cli import main
    main()
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps({"before_engine": FirstEngineImport.before,
                  "all": sorted({m.split(".")[0] for m in sys.modules})}), file=sys.stderr)
"""


@pytest.mark.slow
def test_a_one_shot_run_imports_only_what_it_uses(smollm2):
    argv = ["qwen", "run", str(smollm2), "--temperature", "0", "-n", "4", "What is the capital of France?"]
    result = subprocess.run([sys.executable, "-c", ONESHOT_PROBE.replace("ARGV", repr(argv))], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert result.stdout.strip(), result.stderr  # it really answered
    seen = json.loads(result.stderr.strip().splitlines()[-1])
    assert "llama_cpp" in seen["all"]
    assert not set(seen["all"]) & set(NOT_ON_ONESHOT)
    assert "numpy" not in seen["before_engine"], "numpy imported for something other than llama_cpp"
