"""The data of `--style opencompass`, in the anchors' own formats, from a local folder or the hub.

Local folders, laid out as the data sets ship:
- MMLU (hendrycks' data.tar): `dev/{subject}_dev.csv` and `test/{subject}_test.csv`, rows
  `question,A,B,C,D,answer` without a header; or `test.*` and `dev.*` files (JSONL, CSV with a
  header, Parquet) in cais/mmlu's columns `question, subject, choices, answer`.
- HellaSwag (OpenCompass's folder): `hellaswag.*` to score, `hellaswag_train_sampled25.*` for the
  shots; rows as lm-eval preprocessed them (`query`, `choices`, `gold`) or as the raw data set
  has them (`ctx` or `ctx_a`/`ctx_b`, `activity_label`, `endings`, `label`), preprocessed here as
  lm-eval does.
- Winogrande (winogrande_1.1): `dev.*` to score, `train_xs.*` for the shots; `sentence`,
  `option1`, `option2`, `answer` ("1" or "2").
On the hub (`--hf-dataset`): cais/mmlu (splits test, dev), Rowan/hellaswag (validation; train for
the shots: OpenCompass samples 25 of it, the hub has the whole), allenai/winogrande with a
`--subset` such as winogrande_xs (validation; train).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .opencompass import HELLASWAG_SHOTS, MMLU_SHOTS, WINOGRANDE_SHOTS, Blank, Choice4
from .rows import SUFFIXES, Row, hub_rows, read_rows

#: Local file stems and hub split names of the split scored and the split the shots come from.
LOCAL_SPLITS = {
    "mmlu": ("test", "dev"),
    "hellaswag": ("hellaswag", "hellaswag_train_sampled25"),
    "winogrande": ("dev", "train_xs"),
}
HUB_SPLITS = {"mmlu": ("test", "dev"), "hellaswag": ("validation", "train"), "winogrande": ("validation", "train")}
MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")


@dataclass(frozen=True)
class Hub:
    """`--hf-dataset NAME [--subset S]`; `options` reach `load_dataset` (e.g. `data_files`)."""

    name: str
    subset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


Source = Path | Hub


@dataclass(frozen=True)
class Loaded:
    questions: list[Any]
    #: Shots by MMLU subject, or under None for the other tasks.
    shots: dict[str | None, list[Any]]


def load(task: str, source: Source) -> Loaded:
    test_split, shot_split = (HUB_SPLITS if isinstance(source, Hub) else LOCAL_SPLITS)[task]
    if task == "mmlu" and isinstance(source, Path) and (source / "test").is_dir():
        tests, dev = _mmlu_folder(source / "test", "_test"), _mmlu_folder(source / "dev", "_dev")
    else:
        read = _MMLU_ROW if task == "mmlu" else _HELLASWAG_ROW if task == "hellaswag" else _WINOGRANDE_ROW
        tests = [read(where, row) for where, row in _split(source, test_split)]
        dev = [read(where, row) for where, row in _split(source, shot_split)]
    if not tests:
        raise UsageError(f"{_name(source)}: no questions to score")
    if task == "mmlu":
        return Loaded(tests, _mmlu_shots(tests, dev))
    wanted = HELLASWAG_SHOTS if task == "hellaswag" else WINOGRANDE_SHOTS
    if len(dev) <= max(wanted):
        raise UsageError(f"{_name(source)}: {len(dev)} rows in {shot_split}; the preset takes rows {list(wanted)}")
    return Loaded(tests, {None: [dev[i] for i in wanted]})


def _name(source: Source) -> str:
    return str(source) if isinstance(source, Path) else source.name


def _split(source: Source, split: str) -> list[Row]:
    if isinstance(source, Hub):
        return hub_rows(source.name, source.subset, split, **source.options)
    if not source.is_dir():
        raise UsageError(f"{source}: not a folder", "give the data set's folder (its splits are files in it)")
    for suffix in SUFFIXES:
        path = source / f"{split}{suffix}"
        if path.is_file():
            return read_rows(path)
    raise UsageError(f"{source}: no {split} file in it ({', '.join(split + s for s in SUFFIXES)})")


def _mmlu_folder(folder: Path, ending: str) -> list[Choice4]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder (MMLU's data has dev/ and test/)")
    files = sorted(folder.glob(f"*{ending}.csv"))
    if not files:
        raise UsageError(f"{folder}: no *{ending}.csv files in it")
    out = []
    for path in files:
        subject = path.name.removesuffix(f"{ending}.csv")
        for where, row in read_rows(path, MMLU_COLUMNS):
            out.append(_choice4(where, row["question"], [row[x] for x in "ABCD"], row["answer"], subject))
    return out


def _mmlu_shots(tests: list[Choice4], dev: list[Choice4]) -> dict[str | None, list[Choice4]]:
    by_subject: dict[str | None, list[Choice4]] = {}
    for q in dev:
        by_subject.setdefault(q.group, []).append(q)
    shots = {}
    for subject in {q.group for q in tests}:
        rows = by_subject.get(subject, [])
        if len(rows) <= max(MMLU_SHOTS):
            raise UsageError(f"MMLU {subject}: {len(rows)} dev rows; the preset takes dev rows {list(MMLU_SHOTS)}")
        shots[subject] = [rows[i] for i in MMLU_SHOTS]
    return shots


def _answer(where: str, answer: Any, count: int, *, one_based: bool = False) -> int:
    if isinstance(answer, str) and len(answer) == 1 and answer.upper() in "ABCD"[:count]:
        return "ABCD".index(answer.upper())
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer)
    if isinstance(answer, int) and not isinstance(answer, bool):
        index = answer - 1 if one_based else answer
        if 0 <= index < count:
            return index
    raise UsageError(f"{where}: the answer {answer!r} is not one of the {count} options")


def _text(where: str, row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise UsageError(f"{where}: no text in the field {name!r}")
    return value


def _choice4(where: str, text: Any, options: Any, answer: Any, group: str | None) -> Choice4:
    if not isinstance(text, str) or not isinstance(options, list) or len(options) != 4:
        raise UsageError(f"{where}: a question needs its text and exactly 4 options")
    if not all(isinstance(o, str) for o in options):
        raise UsageError(f"{where}: every option must be text")
    a, b, c, d = options
    return Choice4(text, (a, b, c, d), _answer(where, answer, 4), group)


def _mmlu_row(where: str, row: dict[str, Any]) -> Choice4:
    """cais/mmlu's columns: question, subject, choices (4), answer (0-3)."""
    subject = row.get("subject")
    if not isinstance(subject, str) or not subject:
        raise UsageError(f"{where}: no subject (MMLU is averaged over subjects)")
    return _choice4(where, row.get("question"), _as_list(row.get("choices")), row.get("answer"), subject)


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def lm_eval_preprocess(text: str) -> str:
    """lm-eval's hellaswag `preprocess` (what OpenCompass's hellaswag.jsonl was written with)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_row(where: str, row: dict[str, Any]) -> Choice4:
    if "query" in row:  # lm-eval's preprocessed rows; OpenCompass drops the activity label
        query = _text(where, row, "query")
        return _choice4(where, query.split(": ", 1)[-1], _as_list(row.get("choices")), row.get("gold"), None)
    if "ctx_a" in row and "ctx_b" in row:
        ctx = _text(where, row, "ctx_a") + " " + _text(where, row, "ctx_b").capitalize()
    else:
        ctx = _text(where, row, "ctx")
    label = row.get("activity_label", "")
    query = lm_eval_preprocess(f"{label}: {ctx}" if label else ctx)
    text = query.split(": ", 1)[-1] if label else query
    endings = _as_list(row.get("endings"))
    if not isinstance(endings, list):
        raise UsageError(f"{where}: no endings")
    options = [lm_eval_preprocess(e) if isinstance(e, str) else e for e in endings]
    return _choice4(where, text, options, row.get("label"), None)


def _winogrande_row(where: str, row: dict[str, Any]) -> Blank:
    sentence = _text(where, row, "sentence")
    if sentence.count("_") != 1:
        raise UsageError(f"{where}: the sentence must have one blank _")
    options = (_text(where, row, "option1"), _text(where, row, "option2"))
    answer = row.get("answer")
    if answer in ("", None):
        raise UsageError(f"{where}: no answer (the test split has none: score dev or validation)")
    return Blank(sentence, options, _answer(where, answer, 2, one_based=True))


_MMLU_ROW: Callable[[str, dict[str, Any]], Any] = _mmlu_row
_HELLASWAG_ROW: Callable[[str, dict[str, Any]], Any] = _hellaswag_row
_WINOGRANDE_ROW: Callable[[str, dict[str, Any]], Any] = _winogrande_row
