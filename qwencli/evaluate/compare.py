"""`qwen eval compare`: a `qwen eval mc --json` result beside Qwen's published numbers
(`data/qwen1_5_reference.json`, each with its source) and beside a reference run, with deltas.

Numbers of different styles never meet: two runs must share their style and task, and the
published table (OpenCompass's presets) is set only beside `--style opencompass` results.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError

TABLE = "qwen1_5_reference.json"
#: The metrics a style's result carries, as fractions (the table is in per cent).
METRICS = {"lm-eval": ("acc", "acc_norm"), "opencompass": ("acc",), "llama.cpp": ("acc",)}


@dataclass(frozen=True)
class Row:
    metric: str
    value: float  # per cent
    other: float | None  # the reference run's, per cent
    published: float | None

    @property
    def delta(self) -> float | None:
        return None if self.other is None else self.value - self.other

    @property
    def delta_published(self) -> float | None:
        return None if self.published is None else self.value - self.published


def read_result(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"{path}: not JSON", "write results with qwen eval mc … --json > RESULT.json") from None
    if not isinstance(result, dict) or result.get("style") not in METRICS:
        raise UsageError(f"{path}: not a qwen eval mc result (no style in it)", "qwen eval mc … --json > RESULT.json")
    return result


def published_table() -> dict[str, Any]:
    text = resources.files("qwencli").joinpath(f"data/{TABLE}").read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def reference_name(model: str) -> str | None:
    """The table's name for a model a result names (a catalog name, repo or GGUF file):
    qwen1.5-7b from "Qwen/Qwen1.5-7B", "qwen1_5-7b-q4_k_m.gguf"; chat models have no entry."""
    m = re.search(r"qwen1[._]5-(\d+(?:\.\d+)?)b", model.lower())
    if m is None or "chat" in model.lower():
        return None
    return f"qwen1.5-{m.group(1)}b"


def _task(result: dict[str, Any]) -> str:
    return str(result.get("task") or "mc")


def compare(
    result: dict[str, Any], other: dict[str, Any] | None, reference: str | None = None
) -> tuple[list[Row], dict[str, Any]]:
    """The rows to print and what they were set beside (the table's model and source, or why not)."""
    style, task = result["style"], _task(result)
    if other is not None and (other.get("style"), _task(other)) != (style, task):
        raise UsageError(
            f"the results are of different styles or tasks: --style {style} {task} and "
            f"--style {other.get('style')} {_task(other)}",
            "compare runs of one style and task: the styles score differently and their numbers do not mix",
        )
    table = published_table()
    beside: dict[str, Any] = {"style": style, "task": task}
    published: float | None = None
    name = reference or reference_name(str(result.get("model", "")))
    if reference is not None and style != table["style"]:
        raise UsageError(
            f"the published table is --style {table['style']}; this result is --style {style}",
            f"score with --style {table['style']} to compare with Qwen's numbers",
        )
    if name is not None and style == table["style"]:
        entry = table["models"].get(name)
        if entry is None:
            if reference is not None:
                raise UsageError(f"{name}: not in the table", f"one of {', '.join(table['models'])}")
        elif task in entry:
            published = float(entry[task])
            beside.update(reference=name, source=entry["source"])
        else:
            beside["note"] = f"the table has no {task} for {name}"
    for key in METRICS[style]:
        if key not in result:
            raise UsageError(f"the result has no {key}")
    rows = [
        Row(
            key,
            100 * float(result[key]),
            100 * float(other[key]) if other is not None and key in other else None,
            published if key == "acc" else None,
        )
        for key in METRICS[style]
    ]
    if other is not None and other.get("questions") != result.get("questions"):
        beside["note"] = f"{result.get('questions')} questions against {other.get('questions')}: not the same set"
    return rows, beside
