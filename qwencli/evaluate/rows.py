"""Rows of a data set, each with where it came from (file and line, or data set and row), so a
misread row is an error that names it.

Local files by their suffix: `.jsonl` (one object a line), `.csv` (a header row names the columns,
unless the caller gives them: MMLU's CSVs have none), `.parquet` (pyarrow, which the `datasets`
extra brings); and the Hugging Face hub through `datasets.load_dataset` (imported only then: the
path for users online; tests reach it with local files through its "json" and "csv" builders).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError

Row = tuple[str, dict[str, Any]]
SUFFIXES = (".jsonl", ".csv", ".parquet")
EXTRA = "pip install 'qwencli[datasets]'"


def read_rows(path: Path, columns: Sequence[str] | None = None) -> list[Row]:
    """Every row of a local file; `columns` names a CSV's columns when it has no header."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = list(_jsonl(path))
    elif suffix == ".csv":
        rows = list(_csv(path, columns))
    elif suffix == ".parquet":
        rows = _parquet(path)
    else:
        raise UsageError(f"{path}: not a data file I can read", f"use one of {', '.join(SUFFIXES)}")
    if not rows:
        raise UsageError(f"{path}: no rows in it")
    return rows


def _jsonl(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                row = json.loads(line)
            except ValueError:
                raise UsageError(f"{where}: not JSON") from None
            if not isinstance(row, dict):
                raise UsageError(f"{where}: not a JSON object")
            yield where, row


def _csv(path: Path, columns: Sequence[str] | None) -> Iterator[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = list(columns) if columns is not None else next(reader, None)
        if not header:
            return
        for values in reader:
            where = f"{path.name} line {reader.line_num}"
            if not values:
                continue
            if len(values) != len(header):
                raise UsageError(f"{where}: {len(values)} fields, expected {len(header)} ({', '.join(header)})")
            yield where, dict(zip(header, values))


def _parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{path}: reading Parquet needs pyarrow", EXTRA) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's errors have no common base worth naming
        raise UsageError(f"{path}: not a Parquet file I can read ({exc})") from None
    return [(f"{path.name} row {i + 1}", row) for i, row in enumerate(table.to_pylist())]


def hub_rows(name: str, subset: str | None, split: str, **kwargs: Any) -> list[Row]:
    """A split of a data set as `datasets.load_dataset` gives it (the hub, or its local builders
    such as "json" with `data_files`)."""
    try:
        import datasets
    except ImportError:
        raise UsageError("--hf-dataset needs the Hugging Face datasets package", EXTRA) from None
    try:
        data = datasets.load_dataset(name, subset, split=split, **kwargs)
    except Exception as exc:  # offline, no such data set or split: its own message says which
        label = f"{name}" + (f" ({subset})" if subset else "")
        raise UsageError(f"{label}, split {split}: {exc}") from None
    label = name if name not in ("json", "csv", "parquet") else split
    return [(f"{label} {split} row {i + 1}", dict(row)) for i, row in enumerate(data)]
