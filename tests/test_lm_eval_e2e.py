"""lm-eval-harness itself, as a client of `qwen serve`, against `qwen eval mc --style lm-eval`.

The real `lm_eval` CLI (the dev extra's lm-eval 0.4.13) runs a local multiple-choice task — a task
YAML this test writes, over a JSONL it writes — through its `local-completions` model with the
server's own tokenizer (`tokenizer_backend=remote`: /tokenize, /detokenize, /tokenizer_info).
Both are real `qwen` processes on the same GGUF: they must agree on acc and acc_norm, and on every
choice's log-likelihood (lm-eval's per-sample log), to the precision two batch layouts allow.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from tests.models import SMOLLM2, require
from tests.processes import run_qwen, start_server, stop_server

pytestmark = pytest.mark.slow

MODEL = "SmolLM2-135M-Instruct.Q4_1"  # the name `qwen serve FILE` gives it
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Russia", "Moscow"), ("Greece", "Athens"), ("Peru", "Lima"),
            ("Kenya", "Nairobi"), ("Norway", "Oslo")]
# A second kind of question the model is near chance on, so the accuracy is neither 0 nor 1.
SUMS = [(a, b) for a, b in ((17, 26), (38, 45), (29, 64), (56, 37))]


def questions() -> list[dict]:
    rng = random.Random(7)
    rows = []
    cities = [c for _, c in CAPITALS]
    for country, capital in CAPITALS:
        choices = [*rng.sample([c for c in cities if c != capital], 3), capital]
        rng.shuffle(choices)
        rows.append({"question": f"Question: What is the capital of {country}?\nAnswer:", "choices": choices,
                     "answer": choices.index(capital)})
    for a, b in SUMS:
        right = a + b
        choices = [str(right), str(right + 10), str(right - 1), str(right + 2)]
        rng.shuffle(choices)
        rows.append({"question": f"Question: {a} + {b} =\nAnswer:", "choices": choices,
                     "answer": choices.index(str(right))})
    return rows


TASK = """task: qwen_mc_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def test_lm_eval_through_qwen_serve_equals_qwen_eval_mc(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval-harness is in the dev extra: pip install 'qwencli[dev]'")
    model = require(SMOLLM2)
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in questions()))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "qwen_mc.yaml").write_text(TASK.format(data=data))

    ours = run_qwen("eval", "mc", model, data, "--style", "lm-eval", "--json", timeout=600)
    assert ours.returncode == 0, ours.stderr.decode()
    mine = json.loads(ours.stdout)
    assert mine["questions"] == len(questions())

    proc, url = start_server(str(model))
    try:
        command = [
            sys.executable, "-m", "lm_eval", "--model", "local-completions",
            "--model_args", f"base_url={url}/v1/completions,model={MODEL},tokenizer_backend=remote",
            "--include_path", str(tmp_path / "tasks"), "--tasks", "qwen_mc_local",
            "--output_path", str(tmp_path / "out"), "--log_samples",
        ]
        env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    finally:
        stop_server(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)  # the table, for the record (pytest -s)

    [results_file] = (tmp_path / "out").rglob("results_*.json")
    theirs = json.loads(results_file.read_text())["results"]["qwen_mc_local"]
    assert theirs["acc,none"] == pytest.approx(mine["acc"], abs=1e-9)
    assert theirs["acc_norm,none"] == pytest.approx(mine["acc_norm"], abs=1e-9)
    assert 0 < mine["acc"] < 1  # neither all right nor all wrong: a real comparison

    # Every choice's log-likelihood, as lm-eval logged it, against ours.
    [samples_file] = (tmp_path / "out").rglob("samples_qwen_mc_local_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    ours_per_question = mine["answers"]
    assert len(samples) == len(ours_per_question)
    for sample, answer in zip(samples, ours_per_question):
        lm_eval_lls = [float(resp[0]) for resp in sample["filtered_resps"]]
        assert lm_eval_lls == pytest.approx(answer["logprobs"], abs=2e-3)
