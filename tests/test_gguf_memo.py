"""A GGUF that passed its check is not walked again by a later process while it stays unchanged
(formats/gguf_memo.py); anything changed, damaged or unwritable means checking it in full."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from qwencli.errors import InvalidModelFile
from qwencli.formats import gguf
from tests.processes import run_qwen


@pytest.fixture
def model(tiny_qwen2_gguf, tmp_path) -> Path:
    copy = tmp_path / "tiny.gguf"
    shutil.copyfile(tiny_qwen2_gguf, copy)
    return copy


@pytest.fixture
def walks(monkeypatch) -> list[int]:
    """How many vocabulary-sized string arrays were walked."""
    walked: list[int] = []
    original = gguf._Cursor.skip_strings

    def counting(self, count):
        walked.append(count)
        return original(self, count)

    monkeypatch.setattr(gguf._Cursor, "skip_strings", counting)
    return walked


def records() -> list[Path]:
    return sorted((Path(os.environ["QWEN_HOME"]) / "gguf-checked").glob("*.json"))


def test_a_second_read_recalls_the_same_model_without_walking_the_vocabulary(model, walks):
    first = gguf._read_model(model)  # as a new process would: past the in-process cache
    assert walks and len(records()) == 1
    walks.clear()
    again = gguf._read_model(model)
    assert walks == []
    assert again == first and again.metadata == first.metadata  # ints, floats, bools, summaries alike
    assert again.files[0].tensors == first.files[0].tensors


def test_a_changed_file_is_checked_again(model, walks, tiny_qwen2_gguf):
    gguf._read_model(model)
    with open(model, "r+b") as handle:  # truncated in place: a different size
        handle.truncate(model.stat().st_size // 2)
    with pytest.raises(InvalidModelFile):
        gguf._read_model(model)
    shutil.copyfile(tiny_qwen2_gguf, model)
    walks.clear()
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched: same size, new time
    gguf._read_model(model)
    assert walks


def test_a_damaged_or_foreign_record_is_ignored_and_replaced(model, walks):
    gguf._read_model(model)
    (record,) = records()
    for damage in ("{not json", json.dumps({"format": 1, "path": "/elsewhere.gguf", "files": []}), "[]"):
        record.write_text(damage)
        walks.clear()
        assert gguf._read_model(model).architecture == "qwen2"
        assert walks, damage
        assert json.loads(record.read_text())["path"] == str(model.absolute())


def test_an_unwritable_home_only_means_checking_every_time(model, walks, monkeypatch, tmp_path):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("QWEN_HOME", str(blocker))
    for _ in range(2):
        walks.clear()
        assert gguf._read_model(model).architecture == "qwen2"
        assert walks


def test_qwen_run_twice_answers_the_same_and_the_second_reads_the_record(model):
    """Through the CLI, as a shell script runs it: the first run records, the second recalls."""
    args = ["run", str(model), "--temperature", "0", "-n", "4", "hi"]
    first = run_qwen(*args)
    assert first.returncode == 0, first.stderr
    (record,) = records()
    recorded = record.stat().st_mtime_ns
    second = run_qwen(*args)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and first.stdout.strip()
    assert record.stat().st_mtime_ns == recorded  # read, not written again
