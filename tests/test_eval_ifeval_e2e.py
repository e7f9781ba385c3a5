"""`qwen eval gen --task ifeval` end to end on the real SmolLM2 GGUF, in subprocesses: structure
and counts of a 3-prompt run, its journal re-graded to the same outcomes, a run resumed from a
shorter one's journal, and `--host` against a real `qwen serve` giving what the engine gives here.

Not accuracy: a 135M model follows what it follows. The prompts are ones it answers briefly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qwencli.backends.base import LoadOptions
from qwencli.evaluate import ifeval, ifeval_checks
from qwencli.server.app import create_app
from qwencli.server.config import ServerConfig
from qwencli.server.static_source import StaticSource
from tests.models import SMOLLM2, require
from tests.processes import as_json, journal_lines, run_qwen, start_server, stop_server
from tests.serving import RunningServer

pytestmark = pytest.mark.slow

END = "Is there anything else I can help with?"
ROWS = [
    {"key": 1, "prompt": "What is the capital of France? Your entire response should be in English, and in all "
     "lowercase letters.", "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    {"key": 3, "prompt": f'What is the capital of France? Finish your response with the exact phrase "{END}"',
     "instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": END}]},
    {"key": 4, "prompt": "What is the capital of Italy? Answer in fewer than 20 words and do not use any commas.",
     "instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
     "kwargs": [{"relation": "less than", "num_words": 20}, {}]},
    {"key": 5, "prompt": "Name a colour.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
]  # fmt: skip
# (the fourth is the one --limit 3 leaves out)


def write_data(path):
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def ifeval_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ifeval")
    data, journal = write_data(tmp / "input_data.jsonl"), tmp / "run.jsonl"
    result = run_qwen("eval", "gen", require(SMOLLM2), "--task", "ifeval", "--data", data, "--limit", "3",
                      "--journal", journal, "--json", env={"QWEN_HOME": str(tmp / "home")}, timeout=600)  # fmt: skip
    return tmp, data, journal, as_json(result)


def test_three_prompts_graded_per_instruction(ifeval_run):
    tmp, _, journal, out = ifeval_run
    assert (out["task"], out["style"], out["prompting"], out["questions"]) == ("ifeval", "lm-eval", "chat", 3)
    assert out["checkers"].startswith("lm-eval 0.4.")
    assert [r["id"] for r in out["records"]] == ["1", "3", "4"]
    for record, row in zip(out["records"], ROWS):
        assert record["instruction_id_list"] == row["instruction_id_list"]
        assert isinstance(record["response"], str) and record["finish_reason"] in ("stop", "length")
        assert 0 <= record["tokens"] <= ifeval.MAX_TOKENS
        assert len(record["strict"]) == len(record["loose"]) == len(row["instruction_id_list"])
        assert all(loose for strict, loose in zip(record["strict"], record["loose"]) if strict)  # loose ⊇ strict
    assert list(out["metrics"]) == list(ifeval.METRICS)
    assert out["metrics"]["inst_level_strict_acc"] == sum(sum(r["strict"]) for r in out["records"]) / 4
    assert out["metrics"]["prompt_level_loose_acc"] == sum(all(r["loose"]) for r in out["records"]) / 3
    assert journal_lines(journal)[0]["checkers"] == out["checkers"]
    # The journal's responses, graded again here, give the journaled outcomes.
    checkers = ifeval_checks.load(tmp / "home")
    examples = ifeval.read_examples(tmp / "input_data.jsonl", checkers)
    for record, example in zip(journal_lines(journal)[1:], examples):
        graded = ifeval.grade(example, record["response"], checkers)
        assert (graded.strict, graded.loose) == (record["strict"], record["loose"])


def test_the_text_output_names_the_checkers_and_lm_evals_metric_names(ifeval_run, tmp_path):
    _, data, journal, _ = ifeval_run
    result = run_qwen("eval", "gen", require(SMOLLM2), "--task", "ifeval", "--data", data, "--limit", "3",
                      "--journal", journal, env={"QWEN_HOME": str(tmp_path)}, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert "(3 done;" in result.stderr.decode()  # all from the journal: nothing generated again
    lines = result.stdout.decode().splitlines()
    assert lines[0].endswith("3 questions, --style lm-eval, chat prompting (the model's template), greedy, 1280 new "
                             "tokens at most; graded by lm-eval's ifeval checkers (Google's instruction_following_eval"
                             " reference code)")  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == list(ifeval.METRICS)


def test_a_run_resumes_from_a_shorter_runs_journal(ifeval_run, tmp_path):
    _, data, _, full = ifeval_run
    journal = tmp_path / "resumed.jsonl"
    args = ["eval", "gen", str(require(SMOLLM2)), "--task", "ifeval", "--data", str(data), "--journal", str(journal),
            "--json"]  # fmt: skip
    env = {"QWEN_HOME": str(tmp_path / "home")}
    first = as_json(run_qwen(*args, "--limit", "1", env=env, timeout=600))
    assert first["questions"] == 1
    resumed = run_qwen(*args, "--limit", "3", env=env, timeout=600)
    assert "(1 done;" in resumed.stderr.decode()
    out = as_json(resumed)
    assert [line["id"] for line in journal_lines(journal)[1:]] == ["1", "3", "4"]  # each prompt once
    assert out["metrics"] == full["metrics"]
    assert [r["response"] for r in out["records"]] == [r["response"] for r in full["records"]]


def test_on_a_server_the_responses_are_the_engines(ifeval_run, tmp_path):
    _, data, _, local = ifeval_run
    config = ServerConfig(startup_models=("smollm2",), keep_alive=None, load=LoadOptions())
    app = create_app(config, StaticSource({"smollm2": require(SMOLLM2)}))
    with RunningServer(app) as server:
        result = run_qwen("eval", "gen", "smollm2", "--host", server.base, "--task", "ifeval", "--data", data,
                          "--limit", "2", "--json", env={"QWEN_HOME": str(tmp_path)}, timeout=600)  # fmt: skip
    remote = as_json(result)
    assert remote["prompting"] == "chat" and remote["questions"] == 2
    assert [r["response"] for r in remote["records"]] == [r["response"] for r in local["records"][:2]]
    assert [(r["strict"], r["loose"]) for r in remote["records"]] == [
        (r["strict"], r["loose"]) for r in local["records"][:2]]  # fmt: skip


TASK = """task: qwen_ifeval_local
include: {ifeval_yaml}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {data}
"""


def test_lm_eval_through_qwen_serve_equals_qwen_eval_gen(tmp_path):
    """lm-eval-harness itself (its `ifeval` task, only the data local) as a chat client of
    `qwen serve`, beside `qwen eval gen --host` on the same server: the same responses, and the
    same four numbers."""
    import lm_eval.tasks.ifeval as package

    data = tmp_path / "input_data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]))
    (tmp_path / "tasks").mkdir()
    task = TASK.format(ifeval_yaml=next(iter(package.__path__)) + "/ifeval.yaml", data=data)
    (tmp_path / "tasks" / "qwen_ifeval.yaml").write_text(task)
    model = require(SMOLLM2)
    env = {"QWEN_HOME": str(tmp_path / "home")}
    proc, url = start_server(str(model))
    try:
        ours = as_json(run_qwen("eval", "gen", model.stem, "--host", url, "--task", "ifeval", "--data", data, "--json",
                                env=env, timeout=600))  # fmt: skip
        command = [
            sys.executable, "-m", "lm_eval", "--model", "local-chat-completions", "--apply_chat_template",
            "--model_args", f"base_url={url}/v1/chat/completions,model={model.stem}",
            "--include_path", str(tmp_path / "tasks"), "--tasks", "qwen_ifeval_local",
            "--output_path", str(tmp_path / "out"), "--log_samples",
        ]  # fmt: skip
        # Offline as here; lm-eval finds the punkt_tab our run wrote through NLTK_DATA.
        lm_env = {**os.environ, **env, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                  "HF_HOME": str(tmp_path / "hf"), "NLTK_DATA": str(tmp_path / "home" / "nltk_data")}  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=lm_env, cwd=tmp_path)
    finally:
        stop_server(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)  # lm-eval's table, for the record (pytest -s)
    [results_file] = (tmp_path / "out").rglob("results_*.json")
    theirs = json.loads(results_file.read_text())["results"]["qwen_ifeval_local"]
    [samples_file] = (tmp_path / "out").rglob("samples_qwen_ifeval_local_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    assert [s["resps"][0][0] for s in samples] == [r["response"] for r in ours["records"]]
    assert {name: theirs[f"{name},none"] for name in ifeval.METRICS} == ours["metrics"]
