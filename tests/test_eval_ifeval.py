"""`qwen eval gen --task ifeval`'s parts that need no model: a small IFEval file whose outcomes
this test knows, graded through our scoring function (lm-eval's checkers) and through lm-eval's
own `ifeval` task, to the same four numbers; Google's and the HF data set's row layouts; bad rows
named by file and line; the missing extra; punkt_tab offline; the driver over a fake backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from qwencli.errors import UsageError
from qwencli.evaluate import ifeval, ifeval_checks
from qwencli.evaluate.journal import Journal
from tests.models import ROOT

END = "Is there anything else I can help with?"
LONG_LOWER = "the sky looks blue because the air scatters blue sunlight more than the other colours."

#: (key, [(instruction, kwargs)], prompt, response, strict per instruction, loose per instruction).
#: Loose also tries the response without its first line, its last line, both, and without "*".
CASES = [
    (1001, [("punctuation:no_comma", {}),
            ("length_constraints:number_words", {"relation": "at least", "num_words": 10})],
     "Count to eleven without commas, in at least 10 words.",
     "Sure, here it is:\none two three four five six seven eight nine ten eleven",
     [False, True], [True, True]),  # the comma is on the first line, which loose drops
    (1002, [("detectable_format:number_bullet_lists", {"num_bullets": 3})],
     "Name three fruits as exactly 3 markdown bullet points.", "* apples\n* pears\n* plums",
     [True], [True]),
    (1003, [("change_case:english_lowercase", {})],
     "Why is the sky blue? Answer in English, all lowercase.", "Sure!\n" + LONG_LOWER,
     [False], [True]),  # "Sure!" on the first line
    (1004, [("length_constraints:number_words", {"relation": "less than", "num_words": 5})],
     "Count to five in fewer than 5 words.", "one two three four five",
     [False], [False]),  # 5 words is not fewer than 5
    (1005, [("startend:end_checker", {"end_phrase": END})],
     f"What is the capital of France? End with the exact phrase {END!r}.",
     f"Paris is the capital. **{END}**",
     [False], [True]),  # the closing ** goes when loose removes the asterisks
    (1006, [("detectable_format:json_format", {}), ("punctuation:no_comma", {})],
     "Give the capital of France in JSON, without commas.", '```json\n{"capital": "Paris"}\n```',
     [True, True], [True, True]),  # a fenced block is JSON to the checker
]  # fmt: skip


def google_row(case):
    key, instructions, prompt, *_ = case
    return {"key": key, "prompt": prompt, "instruction_id_list": [i for i, _ in instructions],
            "kwargs": [k for _, k in instructions]}  # fmt: skip


#: The keywords the google/IFEval data set's rows carry in every kwargs dict (nulls where unused).
HF_KEYWORDS = ("num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat", "num_paragraphs",
               "num_sentences", "num_bullets", "section_spliter", "num_sections", "capital_relation",
               "capital_frequency", "keywords", "forbidden_words", "keyword", "frequency", "letter", "let_frequency",
               "let_relation", "language", "end_phrase", "postscript_marker", "first_word",
               "nth_paragraph")  # fmt: skip


def hf_row(case):
    row = google_row(case)
    row["kwargs"] = [{name: k.get(name) for name in HF_KEYWORDS} for k in row["kwargs"]]
    return row


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def checkers(tmp_path_factory):
    return ifeval_checks.load(tmp_path_factory.mktemp("home"))


@pytest.fixture
def examples(tmp_path, checkers):
    return ifeval.read_examples(write_jsonl(tmp_path / "input_data.jsonl", [google_row(c) for c in CASES]), checkers)


def expected_metrics():
    """The four numbers from the table above, counted here."""
    out = {}
    for kind, column in (("strict", 4), ("loose", 5)):
        lists = [case[column] for case in CASES]
        out[f"prompt_level_{kind}_acc"] = Fraction(sum(all(one) for one in lists), len(lists))
        out[f"inst_level_{kind}_acc"] = Fraction(sum(sum(one) for one in lists), sum(len(one) for one in lists))
    return out


# -- grading -----------------------------------------------------------------------------------


def test_known_responses_grade_as_the_table_says(examples, checkers):
    assert [e.id for e in examples] == ["1001", "1002", "1003", "1004", "1005", "1006"]
    graded = [ifeval.grade(e, case[3], checkers) for e, case in zip(examples, CASES)]
    assert [(g.strict, g.loose) for g in graded] == [(case[4], case[5]) for case in CASES]
    expected = expected_metrics()
    # 2 of 6 prompts fully followed strictly, 5 loosely; 4 of 8 instructions strictly, 7 loosely.
    assert expected == {"prompt_level_strict_acc": Fraction(2, 6), "inst_level_strict_acc": Fraction(4, 8),
                        "prompt_level_loose_acc": Fraction(5, 6), "inst_level_loose_acc": Fraction(7, 8)}  # fmt: skip
    got = ifeval.metrics(graded)
    assert list(got) == list(ifeval.METRICS)  # lm-eval's names, in its metric_list order
    assert got == {name: pytest.approx(float(value), abs=1e-12) for name, value in expected.items()}


def test_lm_evals_own_ifeval_task_gives_the_same_four_numbers(tmp_path, checkers):
    """The real `ifeval` task (its yaml, its process_results and aggregations, the rows read by
    `datasets` from the same file) against ours on the same responses."""
    import lm_eval.tasks.ifeval as package
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    data = write_jsonl(tmp_path / "input_data.jsonl", [google_row(c) for c in CASES])
    config = load_yaml(next(iter(package.__path__)) + "/ifeval.yaml")
    assert config["generation_kwargs"]["max_gen_toks"] == ifeval.MAX_TOKENS
    assert config["generation_kwargs"]["until"] == [] and config["num_fewshot"] == 0
    config |= {"dataset_path": "json", "dataset_kwargs": {"data_files": {"train": str(data)},
                                                          "cache_dir": str(tmp_path / "datasets")}}  # fmt: skip
    task = ConfigurableTask(config=config)
    docs = list(task.test_docs())
    assert [d["key"] for d in docs] == [c[0] for c in CASES]
    results = [task.process_results(doc, [case[3]]) for doc, case in zip(docs, CASES)]
    aggregate = task.aggregation()
    theirs = {name: aggregate[name]([r[name] for r in results]) for name in ifeval.METRICS}

    examples = ifeval.read_examples(data, checkers)
    ours = ifeval.metrics([ifeval.grade(e, case[3], checkers) for e, case in zip(examples, CASES)])
    assert ours == theirs
    assert theirs == {name: pytest.approx(float(v), abs=1e-12) for name, v in expected_metrics().items()}


def test_a_checker_that_draws_its_own_keywords_grades_alike_every_time(tmp_path, checkers):
    """Google's key 1122 asks for `letter: "#"`, which the checker cannot count, so it draws a
    random letter: seeded, each grade of the same response is the same, and the caller's random
    state is left as it was."""
    import random

    row = {"key": 1122, "prompt": "Include at least 4 hashtags, starting with '#'",
           "instruction_id_list": ["keywords:letter_frequency"],
           "kwargs": [{"let_relation": "at least", "letter": "#", "let_frequency": 4}]}  # fmt: skip
    (example,) = ifeval.read_examples(write_jsonl(tmp_path / "input_data.jsonl", [row]), checkers)
    response = "abcdefghijklm " * 4  # half the alphabet 4 times: an unseeded draw passes half the time
    graded = []
    for caller_seed in range(12):  # whatever the caller's random state
        random.seed(caller_seed)
        before = random.getstate()
        graded.append(ifeval.grade(example, response, checkers))
        assert random.getstate() == before
    assert len({(tuple(g.strict), tuple(g.loose)) for g in graded}) == 1


def test_the_data_sets_rows_with_nulls_grade_as_googles(tmp_path, checkers):
    import pyarrow as pa
    import pyarrow.parquet as pq

    google = ifeval.read_examples(write_jsonl(tmp_path / "g.jsonl", [google_row(c) for c in CASES]), checkers)
    hf = ifeval.read_examples(write_jsonl(tmp_path / "hf.jsonl", [hf_row(c) for c in CASES]), checkers)
    parquet = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist([hf_row(c) for c in CASES]), parquet)
    from_parquet = ifeval.read_examples(parquet, checkers)
    assert from_parquet[0].kwargs[1]["num_words"] == 10 and from_parquet[0].kwargs[1]["end_phrase"] is None
    for examples in (hf, from_parquet):
        assert [e.id for e in examples] == [e.id for e in google]
        for ours, reference, case in zip(examples, google, CASES):
            assert ifeval.grade(ours, case[3], checkers) == ifeval.grade(reference, case[3], checkers)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_commas"], "kwargs": [{}]},
         "'punctuation:no_commas' is not an IFEval instruction lm-eval knows"),
        ({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []},
         "kwargs is a list of 1 objects, one per instruction"),
        ({"key": 1, "prompt": "p", "instruction_id_list": ["detectable_format:number_bullet_lists"],
          "kwargs": [{"num_bullet": 3}]}, "detectable_format:number_bullet_lists does not take these kwargs"),
        ({"key": 1, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}, "has a prompt"),
        ({"prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}, "has a key"),
        ({"key": 1, "prompt": "p", "instruction_id_list": [], "kwargs": []}, "instruction_id_list is a list"),
        ({"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": ["x"]},
         "are an object, not str"),
    ],
)  # fmt: skip
def test_a_bad_row_is_named_by_file_and_line(tmp_path, checkers, row, message):
    good = google_row(CASES[1])
    path = write_jsonl(tmp_path / "input_data.jsonl", [good, row])
    with pytest.raises(UsageError) as caught:
        ifeval.read_examples(path, checkers)
    assert caught.value.message.startswith("input_data.jsonl line 2: ")
    assert message in caught.value.message


def test_a_key_twice_and_a_line_that_is_not_json(tmp_path, checkers):
    row = google_row(CASES[1])
    again = r"input_data.jsonl line 3: key 1002 again \(first at input_data.jsonl line 1\)"
    with pytest.raises(UsageError, match=again):
        ifeval.read_examples(write_jsonl(tmp_path / "input_data.jsonl", [row, google_row(CASES[0]), row]), checkers)
    (tmp_path / "broken.jsonl").write_text(json.dumps(row) + "\n{not json\n")
    with pytest.raises(UsageError, match="broken.jsonl line 2: not JSON"):
        ifeval.read_examples(tmp_path / "broken.jsonl", checkers)


# -- the extra, and NLTK's data offline -------------------------------------------------------


@pytest.mark.parametrize("module", ["langdetect", "immutabledict", "lm_eval.tasks.ifeval"])
def test_without_the_extra_the_error_names_it(tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package gives: ImportError
    with pytest.raises(UsageError) as caught:
        ifeval_checks.load(tmp_path)
    assert caught.value.hint == "pip install 'qwencli[ifeval]'"
    assert "lm-eval's ifeval checkers" in caught.value.message


def test_the_command_says_so_before_loading_a_model(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from qwencli.cli import app

    monkeypatch.setitem(sys.modules, "langdetect", None)
    data = write_jsonl(tmp_path / "input_data.jsonl", [google_row(CASES[0])])
    result = CliRunner().invoke(app, ["eval", "gen", str(tmp_path / "no-such-model.gguf"), "--task", "ifeval",
                                      "--data", str(data)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "pip install 'qwencli[ifeval]'" in result.output and "no-such-model" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--task ifeval needs --data"),
        (["--style", "opencompass"], "IFEval runs as lm-eval-harness runs it"),
        (["--samples", "3"], "it is zero-shot and greedy"),
        (["--shots", "1"], "it is zero-shot and greedy"),
    ],
)
def test_bad_arguments_are_refused_before_loading(tmp_path, args, message):
    from typer.testing import CliRunner

    from qwencli.cli import app

    result = CliRunner().invoke(app, ["eval", "gen", str(tmp_path / "m.gguf"), "--task", "ifeval", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    if not args:
        assert "input_data.jsonl" in result.output  # where the prompts come from


def test_punkt_tab_from_the_wheel_splits_as_the_wheels_own_tokenizer(tmp_path, monkeypatch):
    import nltk
    import punkt
    from nltk.tokenize import PunktTokenizer

    from qwencli.evaluate import punkt_tab

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    with pytest.raises(LookupError):
        nltk.data.find(punkt_tab.RESOURCE)
    assert punkt_tab.ensure(tmp_path) == tmp_path / "nltk_data"
    assert sorted(p.name for p in (tmp_path / "nltk_data" / punkt_tab.RESOURCE).iterdir()) == sorted(punkt_tab.FILES)
    text = ("Mr. Smith met Dr. Jones at 5 p.m. in the U.S. embassy. They talked. Was it about the Nov. 3 vote? "
            "No! It was about St. Louis, Mo. and Washington, D.C. on Jan. 4th.")  # fmt: skip
    sentences = PunktTokenizer("english").tokenize(text)
    assert sentences == punkt.sent_tokenize(text, "english")
    assert len(sentences) >= 4
    assert punkt_tab.ensure(tmp_path) is None  # found now: nothing written again


OFFLINE_PROBE = """
import json, sys
from pathlib import Path
import nltk

def refused(*args, **kwargs):
    raise AssertionError(f"nltk.download{args}")

nltk.download = refused
nltk.data.path[:] = [sys.argv[1] + "/nowhere"]
from qwencli.evaluate import ifeval_checks
checkers = ifeval_checks.load(Path(sys.argv[1]))
from lm_eval.tasks.ifeval import instructions_util
print(json.dumps(instructions_util.count_sentences("One. Two! Three? Mr. Four is here.")))
"""


def test_the_checkers_import_and_count_sentences_without_a_download(tmp_path):
    result = subprocess.run([sys.executable, "-c", OFFLINE_PROBE, str(tmp_path)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == 4


# -- the driver, over a scripted backend ---------------------------------------------------------

HEADER = {"command": "gen", "model": "fake", "task": "ifeval", "style": "lm-eval"}


def test_the_driver_asks_as_lm_eval_does_and_journals_each_outcome(tmp_path, examples, checkers):
    from qwencli.evaluate.gen_tasks import IfEvalTask
    from qwencli.evaluate.generation import run
    from tests.fakes import FakeBackend

    backend = FakeBackend(replies=[case[3] for case in CASES[:3]])
    path = tmp_path / "j.jsonl"
    with Journal.open(path, HEADER) as journal:
        run(IfEvalTask(examples[:2], checkers), backend, journal, prompting="chat")
    assert [[(m.role, m.content) for m in messages] for messages, _ in backend.calls] == [
        [("user", CASES[0][2])], [("user", CASES[1][2])]]  # fmt: skip
    options = backend.calls[0][1]
    assert (options.temperature, options.max_tokens, options.stop, options.repeat_penalty) == (0.0, 1280, (), 1.0)

    # Resumed with all six: the first two are not asked again, and the numbers come from the journal.
    rest = FakeBackend(replies=[case[3] for case in CASES[2:]])
    with Journal.open(path, HEADER) as journal:
        result = run(IfEvalTask(examples, checkers), rest, journal, prompting="chat")
    assert len(rest.calls) == 4
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert [r["id"] for r in records] == [str(c[0]) for c in CASES]
    assert [(r["response"], r["strict"], r["loose"]) for r in records] == [(c[3], c[4], c[5]) for c in CASES]
    assert records[0]["instruction_id_list"] == ["punctuation:no_comma", "length_constraints:number_words"]
    metrics = IfEvalTask(examples, checkers).metrics(result.records)
    assert metrics == {name: pytest.approx(float(v), abs=1e-12) for name, v in expected_metrics().items()}


def test_base_prompting_sends_the_prompt_alone_as_text(tmp_path, examples, checkers):
    from qwencli.evaluate.gen_tasks import IfEvalTask
    from qwencli.evaluate.generation import run
    from tests.fakes import FakeBackend

    class Completions(FakeBackend):
        texts: list = []

        def complete(self, prompt, options):
            self.texts.append((prompt, options))
            return super().complete(prompt, options)

    backend = Completions(replies=[CASES[1][3]])
    with Journal.open(tmp_path / "j.jsonl", HEADER) as journal:
        result = run(IfEvalTask(examples[1:2], checkers), backend, journal, prompting="base")
    assert backend.calls == []  # no chat template
    ((text, options),) = backend.texts
    assert text == CASES[1][2] and (options.max_tokens, options.stop) == (1280, ())
    assert (result.records[0]["strict"], result.records[0]["loose"]) == ([True], [True])
