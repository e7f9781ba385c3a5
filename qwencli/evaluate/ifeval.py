"""IFEval ("Instruction-Following Evaluation for Large Language Models", Zhou et al. 2023) as
lm-eval-harness runs it: its prompts, the generation it asks for, and its four numbers.

The data is Google's `instruction_following_eval/data/input_data.jsonl` (541 prompts), one
object a line: `key`, `prompt`, `instruction_id_list` and `kwargs` (one dict per instruction;
`{}` where it takes none). The `google/IFEval` data set lm-eval loads holds the same rows, each
dict with every keyword and nulls for those unused (its Parquet files read here too). Nothing of
it ships offline: the user gives the file.

Generation is lm-eval's `ifeval.yaml` (task version 4.0): the prompt alone, zero-shot, greedy, no
stop strings, `max_gen_toks: 1280`. The prompt is the single user message under the model's chat
template (IFEval measures chat models) unless `--prompting base` sends it as plain text. Grading
is lm-eval's (`ifeval_checks.py`); the metrics are its `process_results` aggregated as its
`metric_list` does: prompt level, the mean of "every instruction of the prompt followed"; instruction
level (`agg_inst_level_acc`), the mean over all instructions of all prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chat import Message
from ..errors import UsageError
from .ifeval_checks import Checkers
from .rows import read_rows

STYLE = "lm-eval"
MAX_TOKENS = 1280  # lm_eval/tasks/ifeval/ifeval.yaml: generation_kwargs.max_gen_toks
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
GOOGLE_DATA = "google-research's instruction_following_eval/data/input_data.jsonl, or the google/IFEval data set's rows"


@dataclass(frozen=True)
class Example:
    key: int | str
    prompt: str
    instruction_ids: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]

    @property
    def id(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class Graded:
    strict: list[bool]  # one per instruction, in instruction_id_list's order
    loose: list[bool]


def read_examples(path: Path, checkers: Checkers) -> list[Example]:
    """Every prompt of an IFEval file, each instruction id and its keywords checked against
    lm-eval's registry, so a misspelt one is an error naming its line before any generation."""
    examples: list[Example] = []
    lines: dict[str, str] = {}
    for where, row in read_rows(path):
        example = _example(where, row, checkers)
        if example.id in lines:
            raise UsageError(f"{where}: key {example.key} again (first at {lines[example.id]})")
        lines[example.id] = where
        examples.append(example)
    return examples


def _example(where: str, row: dict[str, Any], checkers: Checkers) -> Example:
    key, prompt, ids, kwargs = (row.get(f) for f in ("key", "prompt", "instruction_id_list", "kwargs"))
    if not isinstance(key, (int, str)) or isinstance(key, bool):
        raise UsageError(f"{where}: an IFEval row has a key (a number)", f"the layout is {GOOGLE_DATA}'s")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(f"{where}: an IFEval row has a prompt (text)")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise UsageError(f"{where}: instruction_id_list is a list of instruction ids")
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        raise UsageError(f"{where}: kwargs is a list of {len(ids)} objects, one per instruction ({{}} for none)")
    given: list[dict[str, Any]] = []
    for instruction, keywords in zip(ids, kwargs):
        if not checkers.known(instruction):
            raise UsageError(f"{where}: {instruction!r} is not an IFEval instruction lm-eval knows",
                             f"its {len(checkers.registry)} ids are those of {GOOGLE_DATA}")  # fmt: skip
        keywords = {} if keywords is None else keywords
        if not isinstance(keywords, dict):
            raise UsageError(f"{where}: the kwargs of {instruction} are an object, not {type(keywords).__name__}")
        try:
            checkers.check_kwargs(instruction, keywords)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{where}: {instruction} does not take these kwargs ({exc})") from None
        given.append(keywords)
    return Example(key, prompt, tuple(ids), tuple(given))


def chat_messages(example: Example) -> list[Message]:
    return [Message("user", example.prompt)]


def grade(example: Example, response: str, checkers: Checkers) -> Graded:
    strict, loose = checkers.grade(example.key, example.prompt, example.instruction_ids, example.kwargs, response)
    return Graded(strict, loose)


def metrics(graded: Sequence[Graded]) -> dict[str, float | None]:
    """lm-eval's four numbers over the prompts graded, under the names it prints."""
    if not graded:
        return dict.fromkeys(METRICS)
    out: dict[str, float | None] = {}
    for kind in ("strict", "loose"):
        lists = [getattr(g, kind) for g in graded]
        instructions = [followed for one in lists for followed in one]
        out[f"prompt_level_{kind}_acc"] = sum(all(one) for one in lists) / len(lists)
        out[f"inst_level_{kind}_acc"] = sum(instructions) / len(instructions)
    return {name: out[name] for name in METRICS}
