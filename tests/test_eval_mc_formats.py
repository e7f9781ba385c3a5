"""`qwen eval mc`'s data readers, without a model: each anchor's file format read as it ships (and
its errors naming the file and line), Parquet and the Hugging Face `datasets` path reading the
same questions as the local files."""

from __future__ import annotations

import json

import pytest

from qwencli.errors import UsageError
from qwencli.evaluate import llamacpp_tasks, opencompass_data
from qwencli.evaluate.opencompass import Blank, Choice4
from tests import mc_sets
from tests.processes import run_qwen


def test_llama_cpp_hellaswag_file_errors_name_the_line(tmp_path):
    path = mc_sets.write_llama_hellaswag(tmp_path / "hs.txt")
    lines = path.read_text().splitlines()
    (tmp_path / "short.txt").write_text("\n".join(lines[:7]) + "\n")
    with pytest.raises(UsageError, match="short.txt: 7 lines, not a multiple of 6"):
        llamacpp_tasks.read_hellaswag(tmp_path / "short.txt")
    lines[7] = "two"
    (tmp_path / "bad.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="bad.txt line 8: the right ending's index must be 0-3"):
        llamacpp_tasks.read_hellaswag(tmp_path / "bad.txt")


def test_llama_cpp_winogrande_csv_quotes_header_and_errors(tmp_path):
    path = tmp_path / "wg.csv"
    path.write_text('index,sentence,option1,option2,answer\n0,"So, the _ won.",Ann,Bob,2\n1,The _ ran.,cat,dog,1\n')
    tasks = llamacpp_tasks.read_winogrande(path)
    assert [(t.first, t.second, t.choices, t.answer) for t in tasks] == [
        ("So, the ", " won.", ("Ann", "Bob"), 1), ("The ", " ran.", ("cat", "dog"), 0)]
    path.write_text("0,The _ ran.,cat,dog,1\n1,The _ sat.,cat,dog,3\n")
    with pytest.raises(UsageError, match="wg.csv line 2: the answer must be 1 or 2"):
        llamacpp_tasks.read_winogrande(path)


def test_llama_cpp_multiple_choice_binary_round_trip_and_truncation(tmp_path):
    path = mc_sets.write_llama_multiple_choice(tmp_path / "mc.bin", mc_sets.MC_TASKS)
    tasks = llamacpp_tasks.read_multiple_choice(path)
    assert [(t.context, t.endings, t.answers) for t in tasks] == [
        (q, tuple(a), frozenset({r})) for q, a, r in mc_sets.MC_TASKS]
    (tmp_path / "cut.bin").write_bytes(path.read_bytes()[:-9])
    with pytest.raises(UsageError, match="cut.bin: ends inside task 3's"):
        llamacpp_tasks.read_multiple_choice(tmp_path / "cut.bin")


def test_mmlu_folder_as_hendrycks_ships_it(tmp_path):
    loaded = opencompass_data.load("mmlu", mc_sets.write_mmlu(tmp_path / "mmlu"))
    assert len(loaded.questions) == 7
    first = loaded.questions[0]
    assert first == Choice4("What is 7 + 8?", ("15", "16", "14", "17"), 0, "elementary_mathematics")
    assert [len(v) for v in loaded.shots.values()] == [5, 5]
    bad = tmp_path / "mmlu" / "test" / "geography_test.csv"
    bad.write_text(bad.read_text().splitlines()[0] + "\nWhere?,a,b,c,d\n")
    with pytest.raises(UsageError, match="geography_test.csv line 2: 5 fields, expected 6"):
        opencompass_data.load("mmlu", tmp_path / "mmlu")
    bad.write_text("Where?,a,b,c,d,E\n")
    with pytest.raises(UsageError, match="geography_test.csv line 1: the answer 'E' is not one of the 4"):
        opencompass_data.load("mmlu", tmp_path / "mmlu")


def test_hellaswag_raw_rows_preprocessed_as_lm_eval_and_winogrande_errors(tmp_path):
    loaded = opencompass_data.load("hellaswag", mc_sets.write_hellaswag(tmp_path / "hs"))
    assert loaded.questions[0].text == mc_sets.HELLASWAG[1][1]  # the activity label dropped, as OpenCompass does
    assert opencompass_data.lm_eval_preprocess("A man [header] sits. [title] Then  he") == "A man sits.. Then he"
    root = mc_sets.write_winogrande(tmp_path / "wg")
    assert opencompass_data.load("winogrande", root).questions[0] == Blank(
        mc_sets.WINOGRANDE[1][0], ("trophy", "suitcase"), 1)
    mc_sets.write_jsonl(root / "dev.jsonl", [{"sentence": "The _ ran.", "option1": "a", "option2": "b", "answer": "1"},
                                             {"sentence": "The _ sat.", "option1": "a", "option2": "b", "answer": ""}])
    with pytest.raises(UsageError, match="dev.jsonl line 2: no answer"):
        opencompass_data.load("winogrande", root)
    (root / "dev.jsonl").write_text((root / "dev.jsonl").read_text().splitlines()[0] + "\n")
    (root / "train_xs.jsonl").write_text((root / "dev.jsonl").read_text() * 2)
    with pytest.raises(UsageError, match="rows \\[0, 2, 4, 6, 8\\]"):
        opencompass_data.load("winogrande", root)


def test_parquet_and_the_datasets_loader_read_what_the_jsonl_files_hold(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("datasets", reason="the datasets extra: pip install 'qwencli[datasets]'")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    jsonl = mc_sets.write_hellaswag(tmp_path / "jsonl")
    expected = opencompass_data.load("hellaswag", jsonl)

    parquet = tmp_path / "parquet"
    parquet.mkdir()
    for stem in ("hellaswag", "hellaswag_train_sampled25"):
        rows = [json.loads(line) for line in (jsonl / f"{stem}.jsonl").read_text().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows), parquet / f"{stem}.parquet")
    assert opencompass_data.load("hellaswag", parquet) == expected

    # --hf-dataset's path: datasets.load_dataset, here through its local "json" builder.
    files = {"validation": str(jsonl / "hellaswag.jsonl"), "train": str(jsonl / "hellaswag_train_sampled25.jsonl")}
    hub = opencompass_data.Hub("json", None, {"data_files": files, "cache_dir": str(tmp_path / "cache")})
    assert opencompass_data.load("hellaswag", hub) == expected

    # cais/mmlu's columns (question, subject, choices, answer), as its Parquet files have them.
    mmlu = tmp_path / "mmlu"
    mmlu.mkdir()
    for split, n in (("test", 2), ("dev", 5)):
        rows = [{"question": f"Q{i}?", "subject": "astronomy", "choices": ["a", "b", "c", "d"], "answer": i % 4}
                for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows), mmlu / f"{split}.parquet")
    loaded = opencompass_data.load("mmlu", mmlu)
    assert loaded.questions[1] == Choice4("Q1?", ("a", "b", "c", "d"), 1, "astronomy")
    assert len(loaded.shots["astronomy"]) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--style", "opencompass"], "--style opencompass needs --task: one of mmlu, hellaswag, winogrande"),
        (["--style", "lm-eval", "--task", "mmlu"], "--task names a preset of the other styles"),
        (["--style", "helm"], "not a scoring style"),
        (["--style", "llama.cpp", "--task", "winogrande", "--hf-dataset", "x"], "use it with --style opencompass"),
    ],
)
def test_mc_option_errors_before_any_model_loads(tmp_path, args, message):
    done = run_qwen("eval", "mc", "no-such-model.gguf", tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr.decode()
