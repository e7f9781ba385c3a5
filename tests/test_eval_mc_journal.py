"""`qwen eval mc`'s journal without a model: a run interrupted mid-way resumes, scoring only the
questions not in the journal, to the numbers of an uninterrupted run (recomputed from the
journal's records, MMLU's per subject); another run's journal is refused before any load.

The scorer is the real `Scorer` over a scripted engine at the `Evaluating` seam: a word
tokenizer and log-probs that depend on the token and the one before it, so every choice scores
differently and a question scored twice would show in the call count.
"""

from __future__ import annotations

import json
import zlib

import pytest
from typer.testing import CliRunner

from qwencli.backends.base import PulledStream
from qwencli.chat import Chunk, TokenLogprob
from qwencli.cli import app
from qwencli.evaluate import journal as journal_module
from qwencli.evaluate.datasets import Question
from qwencli.evaluate.journal import Journal
from qwencli.evaluate.mc_run import mc_task, run
from qwencli.evaluate.opencompass import Choice4
from qwencli.evaluate.scoring import Scorer
from tests import mc_sets
from tests.test_eval_mc import Words


class ScriptedEngine(Words):
    """Prompt log-probs from the tokens alone; `interrupt_at` raises Ctrl-C on that call."""

    def __init__(self, interrupt_at: int | None = None):
        super().__init__()
        self.calls = 0
        self.interrupt_at = interrupt_at

    def tokenize_text(self, text, *, add_special):
        # Ids from the words themselves, not the order a vocabulary met them: a fresh engine
        # (the resumed run's) must score a text as the first one did.
        pieces = [self.pieces[i] for i in super().tokenize_text(text, add_special=add_special)]
        return [zlib.crc32(p.encode()) % 100_003 for p in pieces]

    @property
    def pieces(self):
        return {i: p for p, i in self.vocab.items()}

    def complete(self, prompt, options):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        tokens = list(prompt)
        entries = [TokenLogprob(tokens[0], b"", None)]
        for before, token in zip(tokens, tokens[1:]):
            logprob = -0.1 - ((before * 31 + token * 17) % 23) / 10
            entries.append(TokenLogprob(token, b"", logprob, ((token, b"", logprob),)))
        return PulledStream(iter([Chunk(finish_reason="stop", prompt_logprobs=tuple(entries))]))


QUESTIONS = [Question(f"Question: what is {i} plus one? Answer:", (f"{i}", f"{i + 1}", f"{i + 2}"), 1)
             for i in range(4)]  # fmt: skip
HEADER = {"command": "mc", "model": "m.gguf", "style": "lm-eval", "task": None}


def score(style, task, items, shots, journal, engine):
    return run(mc_task(style, task, items, Scorer(engine, 4096), shots), journal)  # type: ignore[arg-type]


def test_an_interrupted_run_resumes_without_scoring_a_question_twice(tmp_path):
    whole = ScriptedEngine()
    with Journal.open(tmp_path / "whole.jsonl", HEADER) as journal:
        uninterrupted = score("lm-eval", None, QUESTIONS, {}, journal, whole)
    assert whole.calls == 12  # 4 questions, 3 choices each

    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER) as journal, pytest.raises(KeyboardInterrupt):
        score("lm-eval", None, QUESTIONS, {}, journal, ScriptedEngine(interrupt_at=5))  # in question 1
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines[1:]] == ["0"]
    assert lines[1]["logprobs"] == list(uninterrupted.answers[0].logprobs)  # every choice's score

    rest = ScriptedEngine()
    with Journal.open(path, HEADER) as journal:
        resumed = score("lm-eval", None, QUESTIONS, {}, journal, rest)
    assert rest.calls == 9  # questions 1-3 only
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()[1:]] == ["0", "1", "2", "3"]
    assert resumed.to_json() == uninterrupted.to_json()
    assert len({a.logprobs for a in resumed.answers}) == 4  # the scores differ: the equality means something


def test_mmlu_is_recomputed_per_subject_from_the_journal(tmp_path):
    def q(subject, text, answer):
        return Choice4(text, ("one", "two", "three", "four"), answer, subject)

    questions = [q("geography", "Capital of France?", 0), q("math", "1 + 1?", 1), q("geography", "Capital of Peru?", 2),
                 q("math", "2 + 2?", 3), q("math", "3 + 3?", 0)]  # fmt: skip
    shots = {s: [q(s, f"Example about {s}?", 1)] for s in ("geography", "math")}
    header = {**HEADER, "style": "opencompass", "task": "mmlu"}
    with Journal.open(tmp_path / "whole.jsonl", header) as journal:
        uninterrupted = score("opencompass", "mmlu", questions, shots, journal, ScriptedEngine())
    path = tmp_path / "j.jsonl"
    with Journal.open(path, header) as journal, pytest.raises(KeyboardInterrupt):
        score("opencompass", "mmlu", questions, shots, journal, ScriptedEngine(interrupt_at=10))  # in question 2
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert [(r["id"], r["subject"], len(r["scores"])) for r in records] == [("0", "geography", 4), ("1", "math", 4)]
    rest = ScriptedEngine()
    with Journal.open(path, header) as journal:
        resumed = score("opencompass", "mmlu", questions, shots, journal, rest)
    assert rest.calls == 12  # 3 questions, a prompt a letter
    assert resumed.groups() == uninterrupted.groups() and set(resumed.groups()) == {"geography", "math"}
    assert resumed.acc == pytest.approx(sum(resumed.groups().values()) / 2)  # the mean over subjects
    assert resumed.to_json() == uninterrupted.to_json()


def test_another_runs_journal_is_refused_before_the_model_loads(tmp_path):
    data = mc_sets.write_llama_multiple_choice(tmp_path / "mc.bin", mc_sets.MC_TASKS)
    path = tmp_path / "j.jsonl"
    model = tmp_path / "no-such-model.gguf"  # a load would fail on it: the refusal comes first
    Journal.open(path, {"command": "mc", "model": str(model), "style": "lm-eval"}).close()
    before = path.read_bytes()
    result = CliRunner().invoke(app, ["eval", "mc", str(model), str(data), "--style", "llama.cpp", "--task",
                                      "multiple-choice", "--journal", str(path)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "was written for another run" in result.output and "style: 'lm-eval' there, 'llama.cpp' now" in result.output
    assert path.read_bytes() == before


def test_a_data_folder_is_pinned_by_its_files(tmp_path):
    root = mc_sets.write_mmlu(tmp_path / "mmlu")
    first = journal_module.data_sha256(root)
    assert first == journal_module.data_sha256(root)
    (root / "test" / "geography_test.csv").write_text("What is the capital of Chad?,a,b,c,d,A\n")
    assert journal_module.data_sha256(root) != first


def test_eval_help_names_every_subcommand():
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    description = result.output.split("Options")[0]
    assert all(name in description for name in ("ppl", "kld", "mc", "gen", "compare"))
