"""`qwen eval mc` interrupted and resumed on the real SmolLM2 GGUF, in subprocesses: Ctrl-C after
the first journaled question exits 130 with the resume line, and the same command again scores
only the rest, to exactly the numbers of an uninterrupted run (OpenCompass MMLU, per subject).
"""

from __future__ import annotations

import pytest

from tests import mc_sets
from tests.models import SMOLLM2, require
from tests.processes import as_json, interrupted_eval, journal_lines, run_qwen

pytestmark = pytest.mark.slow

#: 3 elementary_mathematics questions, then 1 of geography: both subjects.
ARGS = ["--style", "opencompass", "--task", "mmlu", "--limit", "4", "--ctx", "2048", "--json"]


def without_journal(out):
    return {k: v for k, v in out.items() if k != "journal"}


def test_an_interrupted_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    data = mc_sets.write_mmlu(tmp_path / "mmlu")
    home = {"QWEN_HOME": str(tmp_path / "home")}
    uninterrupted = as_json(run_qwen("eval", "mc", require(SMOLLM2), data, *ARGS, env=home, timeout=600))
    assert uninterrupted["questions"] == 4 and set(uninterrupted["subjects"]) == {"elementary_mathematics", "geography"}
    (default,) = (tmp_path / "home" / "eval").glob("mc-opencompass-mmlu-*.jsonl")
    assert uninterrupted["journal"] == str(default)

    journal = tmp_path / "resumed.jsonl"
    args = ["eval", "mc", str(require(SMOLLM2)), str(data), *ARGS, "--journal", str(journal)]
    status, out, err = interrupted_eval(args, journal)
    assert status == 130, err.decode()
    assert out == b""
    assert f"of 4 questions are in {journal}; run the same command again to resume" in err.decode()
    done = [line["id"] for line in journal_lines(journal)[1:]]
    assert 1 <= len(done) < 4

    resumed = run_qwen(*args, timeout=600)
    assert f"journal: {journal} ({len(done)} done;" in resumed.stderr.decode()
    assert "ETA" in resumed.stderr.decode()  # off a terminal: a line a question
    assert [line["id"] for line in journal_lines(journal)[1:]] == ["0", "1", "2", "3"]  # each question once
    assert without_journal(as_json(resumed)) == without_journal(uninterrupted)

    again = run_qwen("eval", "mc", require(SMOLLM2), data, *ARGS, env=home, timeout=600)  # all done: nothing scored
    assert "(4 done;" in again.stderr.decode() and "ETA" not in again.stderr.decode()
    assert as_json(again) == uninterrupted
