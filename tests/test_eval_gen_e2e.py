"""`qwen eval gen` end to end on the real SmolLM2 GGUF, in subprocesses: GSM8K in both styles,
HumanEval through the sandbox, an interrupted run resumed to the same numbers, another run's
journal refused, and `--host` against a real `qwen serve` giving what the engine gives here.

Structure and counts, not accuracy: a 135M model's answers are what they are.
"""

from __future__ import annotations

import json

import pytest

from qwencli.backends.base import LoadOptions
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.models import ROOT, SMOLLM2, require
from tests.processes import as_json, interrupted_eval, journal_lines, run_qwen
from tests.serving import RunningServer

pytestmark = pytest.mark.slow

HUMANEVAL = ROOT / ".cache" / "data" / "HumanEval.jsonl.gz"
PROBLEMS = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have now?", "3 + 4 = <<3+4=7>>7\n#### 7"),
    ("A box holds 12 pencils. How many pencils are in 5 boxes?", "12 * 5 = <<12*5=60>>60\n#### 60"),
    ("Sara had 1,500 dollars and spent 266. How many dollars are left?", "1500 - 266 = <<1500-266=1234>>1234\n#### 1,234"),
    ("A train goes 60 miles an hour for 2 hours. How far does it go?", "60 * 2 = <<60*2=120>>120\n#### 120"),
]
TRAIN = [
    ("Ann has 2 dogs and 3 cats. How many pets does she have?", "2 + 3 = <<2+3=5>>5\n#### 5"),
    ("A pack has 6 eggs. How many eggs are in 3 packs?", "6 * 3 = <<6*3=18>>18\n#### 18"),
    ("Bob had 10 sweets and ate 4. How many are left?", "10 - 4 = <<10-4=6>>6\n#### 6"),
]


def write_gsm8k(path, rows):
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    return path


def gen(*args, env=None, timeout=600):
    result = run_qwen("eval", "gen", require(SMOLLM2), *args, env=env, timeout=timeout)
    return result


@pytest.fixture(scope="module")
def gsm8k_run(tmp_path_factory):
    """One uninterrupted GSM8K run (OpenCompass style, chat prompting), limited to 3 questions."""
    tmp = tmp_path_factory.mktemp("gsm8k")
    data = write_gsm8k(tmp / "test.jsonl", PROBLEMS)
    journal = tmp / "run.jsonl"
    out = as_json(gen("--task", "gsm8k", "--data", data, "--style", "opencompass", "--limit", "3",
                      "--journal", journal, "--json"))  # fmt: skip
    return data, journal, out


def test_gsm8k_opencompass(gsm8k_run):
    _, journal, out = gsm8k_run
    assert (out["task"], out["style"], out["prompting"], out["questions"]) == ("gsm8k", "opencompass", "chat", 3)
    assert [r["id"] for r in out["records"]] == ["0", "1", "2"]
    assert [r["reference"] for r in out["records"]] == ["7", "60", "1234"]
    for record in out["records"]:
        assert record["completion"] and record["finish_reason"] in ("stop", "length")
        assert record["correct"] == (record["prediction"] == record["reference"])  # integers here
    assert out["metrics"]["accuracy"] == sum(r["correct"] for r in out["records"]) / 3
    lines = journal_lines(journal)
    assert lines[0]["style"] == "opencompass" and [line["id"] for line in lines[1:]] == ["0", "1", "2"]


def test_gsm8k_lm_eval_on_base_prompting_with_examples_from_a_train_file(tmp_path):
    data = write_gsm8k(tmp_path / "test.jsonl", PROBLEMS)
    train = write_gsm8k(tmp_path / "train.jsonl", TRAIN)
    result = gen("--task", "gsm8k", "--data", data, "--style", "lm-eval", "--prompting", "base", "--shots", "2",
                 "--fewshot", train, "--limit", "3", env={"QWEN_HOME": str(tmp_path / "home")})  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0].endswith("3 questions, --style lm-eval, base prompting (plain text), greedy")
    assert [line.split()[0] for line in lines[1:]] == ["exact_match,strict-match", "exact_match,flexible-extract"]
    journals = list((tmp_path / "home" / "eval").glob("gsm8k-lm-eval-*.jsonl"))
    assert len(journals) == 1 and f"journal: {journals[0]}" in result.stderr.decode()
    records = journal_lines(journals[0])[1:]
    assert len(records) == 3 and all({"strict", "flexible", "strict_correct", "flexible_correct"} <= set(r)
                                      for r in records)  # fmt: skip


@pytest.mark.parametrize("prompting", ["chat", "base"])
def test_humaneval_through_the_sandbox(tmp_path, prompting):
    out = as_json(gen("--task", "humaneval", "--data", require(HUMANEVAL), "--limit", "3", "--json",
                      "--prompting", prompting, env={"QWEN_HOME": str(tmp_path)}))  # fmt: skip
    assert (out["style"], out["prompting"], out["questions"]) == ("human-eval", prompting, 3)
    assert [r["id"] for r in out["records"]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    for record in out["records"]:
        (sample,) = record["samples"]
        assert sample["status"] in ("passed", "failed", "timed out", "out of memory")
        assert record["passed"] == (sample["status"] == "passed")
        if prompting == "base":  # cut at the first of human-eval's stop sequences
            assert not any(stop in sample["completion"] for stop in ("\nclass", "\ndef", "\n#", "\nif", "\nprint"))
    assert out["metrics"] == {"pass@1": sum(r["passed"] for r in out["records"]) / 3}


def test_an_interrupted_run_resumes_to_the_uninterrupted_numbers(gsm8k_run, tmp_path):
    data, _, uninterrupted = gsm8k_run
    journal = tmp_path / "resumed.jsonl"
    args = ["eval", "gen", str(require(SMOLLM2)), "--task", "gsm8k", "--data", str(data), "--style", "opencompass",
            "--limit", "3", "--journal", str(journal), "--json"]  # fmt: skip
    status, out, err = interrupted_eval(args, journal)
    assert status == 130, err.decode()
    assert out == b""
    assert "run the same command again to resume" in err.decode()
    done = [line["id"] for line in journal_lines(journal)[1:]]
    assert 1 <= len(done) < 3

    resumed = as_json(run_qwen(*args, timeout=600))
    ids = [line["id"] for line in journal_lines(journal)[1:]]
    assert ids == ["0", "1", "2"]  # each question once, the earlier ones not asked again
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert [r["completion"] for r in resumed["records"]] == [r["completion"] for r in uninterrupted["records"]]


def test_another_runs_journal_is_refused(gsm8k_run):
    data, journal, _ = gsm8k_run
    before = journal.read_bytes()
    result = gen("--task", "gsm8k", "--data", data, "--style", "lm-eval", "--shots", "0", "--journal", journal)
    assert result.returncode == 2
    assert "was written for another run" in result.stderr.decode() and "style" in result.stderr.decode()
    assert journal.read_bytes() == before


def test_on_a_server_the_answers_are_the_engines(gsm8k_run, tmp_path):
    data, _, local = gsm8k_run
    config = ServerConfig(startup_models=("smollm2",), keep_alive=None, load=LoadOptions())
    app = create_app(config, StaticSource({"smollm2": require(SMOLLM2)}))
    with RunningServer(app) as server:
        result = run_qwen("eval", "gen", "smollm2", "--host", server.base, "--task", "gsm8k", "--data", data,
                          "--style", "opencompass", "--limit", "2", "--json", env={"QWEN_HOME": str(tmp_path)},
                          timeout=600)  # fmt: skip
    remote = as_json(result)
    assert remote["prompting"] == "chat" and remote["questions"] == 2
    assert [r["completion"] for r in remote["records"]] == [r["completion"] for r in local["records"][:2]]


def test_on_a_server_base_prompting_goes_through_completions(tmp_path):
    data = write_gsm8k(tmp_path / "test.jsonl", PROBLEMS[:1])
    args = ["--task", "gsm8k", "--data", str(data), "--style", "opencompass", "--prompting", "base", "--json"]
    local = as_json(gen(*args, env={"QWEN_HOME": str(tmp_path / "local")}))
    config = ServerConfig(startup_models=("smollm2",), keep_alive=None, load=LoadOptions())
    app = create_app(config, StaticSource({"smollm2": require(SMOLLM2)}))
    with RunningServer(app) as server:
        remote = as_json(run_qwen("eval", "gen", "smollm2", "--host", server.base, *args,
                                  env={"QWEN_HOME": str(tmp_path / "remote")}, timeout=600))  # fmt: skip
    assert local["prompting"] == remote["prompting"] == "base"
    assert [r["completion"] for r in remote["records"]] == [r["completion"] for r in local["records"]]
    assert "Question:" not in local["records"][0]["completion"]  # the stop OpenCompass's cut makes harmless
