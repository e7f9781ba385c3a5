"""GSM8K as OpenCompass and as lm-eval-harness run it: the prompt, the answer extraction, the match.

The data is the data set's own JSONL: `{"question": …, "answer": "… #### 72"}` a line. Read from
OpenCompass at commit a5acc4b and lm-eval-harness at 4e7e0d4 (both 2026-08); the four examples in
the data file are the config's rounds, checked equal to them.

- `opencompass` (configs/datasets/gsm8k/gsm8k_gen_1d7fe4.py, what `gsm8k_gen` points at): four
  chain-of-thought examples as HUMAN/BOT rounds (`data/gsm8k_opencompass_4shot.json`), then
  "Question: {question}\\nLet's think step by step\\nAnswer:", 512 new tokens. The answer is
  `gsm8k_postprocess` (opencompass/datasets/gsm8k.py): the text before the first "Question:",
  its last `-?\\d+\\.\\d+|-?\\d+` — so "1,234" gives "234" — or "NULL"; the reference is
  `gsm8k_dataset_postprocess`: after "#### ", commas removed; `Gsm8kEvaluator.is_equal`:
  equal strings, or |float(pred) - int(ref)| < 1e-6.
- `lm-eval` (lm_eval/tasks/gsm8k/gsm8k.yaml, version 3): "Question: {question}\\nAnswer:", with
  `num_fewshot: 5` examples "Question: …\\nAnswer: {answer}" + "\\n\\n" drawn from the train split
  by `random.Random(1234).sample` once per question in order (lm_eval/api/samplers.py); stops
  "Question:", "</s>", "<|im_end|>"; 256 new tokens (lm-eval's `max_gen_toks` default). Two
  filters: strict-match `#### (\\-?[0-9\\.\\,]+)` (first match) and flexible-extract
  `(-?[$0-9.,]{2,})|(-?[0-9]+)` (last match, its non-empty group), "[invalid]" otherwise (
  lm_eval/filters/extraction.py `RegexFilter`); `exact_match` against the whole answer after
  removing "," "$" "(?s).*#### " and "\\.$" from both and lower-casing (`exact_match_hf_evaluate`).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..chat import Message
from ..errors import UsageError

STYLES = ("opencompass", "lm-eval")


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str  # the data set's whole answer: reasoning, then "#### 72"


def read_problems(path: Path) -> list[Problem]:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                row = json.loads(line)
            except ValueError:
                raise UsageError(f"{where}: not JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("question"), str):
                raise UsageError(f'{where}: GSM8K lines are {{"question": …, "answer": "… #### N"}}')
            answer = row.get("answer")
            if not isinstance(answer, str) or "#### " not in answer:
                raise UsageError(f"{where}: the answer must end with '#### ' and the number, as GSM8K's do")
            problems.append(Problem(str(len(problems)), row["question"], answer))
    if not problems:
        raise UsageError(f"{path}: no problems in it")
    return problems


# -- OpenCompass ---------------------------------------------------------------------------------

OPENCOMPASS_MAX_TOKENS = 512
#: gsm8k_postprocess keeps only the text before the first "Question:", so stopping there changes
#: nothing it extracts and saves a base model writing the next question.
OPENCOMPASS_STOP = ("Question:",)
_NUMBER = re.compile(r"\-?\d+\.\d+|\-?\d+")


def _opencompass_shots() -> dict[str, Any]:
    text = resources.files("qwencli").joinpath("data/gsm8k_opencompass_4shot.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def opencompass_messages(question: str) -> list[Message]:
    """The rounds as a chat: HUMAN → user, BOT → assistant (OpenCompass's chat models)."""
    shots = _opencompass_shots()
    template = shots["question_template"]
    messages = []
    for shot in shots["shots"]:
        messages.append(Message("user", template.format(question=shot["question"])))
        messages.append(Message("assistant", shot["answer"]))
    messages.append(Message("user", template.format(question=question)))
    return messages


def opencompass_text(question: str) -> str:
    """The rounds as one text, for a base model: OpenCompass's template parser without a meta
    template joins the prompts of the rounds with "\\n" (LMTemplateParser.parse_template)."""
    return "\n".join(m.content for m in opencompass_messages(question))


def opencompass_extract(completion: str) -> str:
    numbers = _NUMBER.findall(completion.split("Question:")[0])
    return numbers[-1] if numbers else "NULL"


def opencompass_reference(answer: str) -> str:
    return answer.split("#### ")[1].replace(",", "")


def opencompass_correct(prediction: str, reference: str) -> bool:
    try:
        return prediction == reference or abs(float(prediction) - int(reference)) < 1e-6
    except ValueError:
        return False


# -- lm-eval-harness -----------------------------------------------------------------------------

LM_EVAL_SHOTS = 5
LM_EVAL_SEED = 1234
LM_EVAL_MAX_TOKENS = 256
LM_EVAL_STOP = ("Question:", "</s>", "<|im_end|>")
_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_IGNORED = (",", "\\$", "(?s).*#### ", "\\.$")
INVALID = "[invalid]"


def lm_eval_shots(train: list[Problem], count: int, n_questions: int) -> list[list[Problem]]:
    """Each question's examples, drawn as lm-eval draws them: one `random.Random(1234)`, one
    `sample(train, count)` per question in order (the train split is not the test split, so no
    extra draw)."""
    if count > len(train):
        raise UsageError(f"{count} examples asked, and the few-shot file has {len(train)}")
    rnd = random.Random(LM_EVAL_SEED)
    return [rnd.sample(train, count) for _ in range(n_questions)]


def lm_eval_text(question: str, shots: list[Problem]) -> str:
    examples = "".join(f"Question: {s.question}\nAnswer: {s.answer}\n\n" for s in shots)
    return examples + f"Question: {question}\nAnswer:"


def lm_eval_messages(question: str, shots: list[Problem]) -> list[Message]:
    """`--apply_chat_template`, few-shot as multi-turn (`simple_evaluate`'s default): each example a
    user turn and its answer as the assistant's (`build_qa_turn`; the delimiters are text-only)."""
    messages = []
    for shot in shots:
        messages.append(Message("user", f"Question: {shot.question}\nAnswer:"))
        messages.append(Message("assistant", shot.answer))
    messages.append(Message("user", f"Question: {question}\nAnswer:"))
    return messages


def lm_eval_strict(completion: str) -> str:
    matches = _STRICT.findall(completion)
    return str(matches[0]).strip() if matches else INVALID


def lm_eval_flexible(completion: str) -> str:
    matches = _FLEXIBLE.findall(completion)
    if not matches:
        return INVALID
    groups = [g for g in matches[-1] if g]
    return groups[0].strip()


def lm_eval_normalize(text: str) -> str:
    for pattern in _IGNORED:
        text = re.sub(pattern, "", text)
    return text.lower()


def lm_eval_match(prediction: str, answer: str) -> bool:
    return lm_eval_normalize(prediction) == lm_eval_normalize(answer)
