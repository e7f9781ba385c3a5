"""`--style llama.cpp`: llama-perplexity's `--hellaswag`, `--winogrande` and `--multiple-choice`,
their data files and their scores, read from tools/perplexity/perplexity.cpp (llama.cpp as
vendored in llama-cpp-python 0.3.36).

Every choice is the text `context + " " + ending` (Winogrande: the sentence with the blank
filled), tokenized whole with BOS if the vocabulary asks (`common_tokenize(…, true)`); the tokens
all choices share are the context, and a choice's score is the mean log-prob of its tokens past
that shared prefix (`hellaswag_score`, `multiple_choice_score`); the highest wins, the first of
equals. Winogrande scores only the words after the filler when both choices have more than 3
tokens past the shared prefix, and never the last token (`winogrande_score`); when it scores
from the shared prefix, the second choice's first token is read from the logits after the
whole first choice — llama.cpp's own "FIXME: this uses the wrong first logits" — and so is it
here, so the numbers are llama-perplexity's.

Where this differs: llama-perplexity draws a random subset (`--hellaswag-tasks`, default 400 of
the file; `--winogrande-tasks`) with its C++ RNG; here every task is scored in file order, and
`--limit N` takes the first N. Its Winogrande reader drops a last line without a newline (and
`-f` strips the file's final newline), so it scores one task fewer than the file has; this
reader scores them all.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .mc_result import Scored, TaskResult, first_max
from .scoring import Scorer

STYLE = "llama.cpp"
MIN_TRAILING = 3  # k_min_trailing_ctx
MAX_ANSWERS = 100
Z = 1.95996398454


@dataclass(frozen=True)
class Task:
    """A context and its endings; `answers` are the indices of the right ones (one, except in
    the multiple-choice format, where any labelled 1 counts)."""

    context: str
    endings: tuple[str, ...]
    answers: frozenset[int]


@dataclass(frozen=True)
class WinoTask:
    first: str
    second: str
    choices: tuple[str, str]
    answer: int  # 0 or 1


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    text = data.decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\n") else text  # what `-f` does


def read_hellaswag(path: Path) -> list[Task]:
    """6 lines a task: the context, the right ending's index, the 4 endings."""
    text = _read_text(path)
    lines = text.split("\n") if text else []
    if not lines or len(lines) % 6:
        raise UsageError(f"{path}: {len(lines)} lines, not a multiple of 6 (context, label, 4 endings a task)")
    tasks = []
    for start in range(0, len(lines), 6):
        label = lines[start + 1].strip()
        if not label.isdigit() or int(label) > 3:
            raise UsageError(f"{path.name} line {start + 2}: the right ending's index must be 0-3, not {label!r}")
        tasks.append(Task(lines[start], tuple(lines[start + 2 : start + 6]), frozenset({int(label)})))
    return tasks


def _csv_commas(line: str) -> list[int]:
    """The first 4 commas outside double quotes (llama.cpp's own scan)."""
    commas, quoted = [], False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            commas.append(i)
            if len(commas) == 4:
                break
    return commas


def read_winogrande(path: Path) -> list[WinoTask]:
    """CSV rows `index,sentence,choice1,choice2,answer` (answer 1 or 2; the sentence quoted if it
    has commas), e.g. ikawrakow/winogrande-eval-for-llama.cpp. A header row is skipped."""
    tasks = []
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        c = _csv_commas(line)
        if len(c) != 4:
            raise UsageError(f"{where}: not 5 comma-separated fields")
        if line[c[0] + 1 : c[0] + 2] == '"':
            sentence = line[c[0] + 2 : c[1] - 1]
        else:
            sentence = line[c[0] + 1 : c[1]]
        answer = line[c[3] + 1 :].strip()
        if answer not in ("1", "2"):
            if number == 1 and not answer.isdigit():
                continue  # a header
            raise UsageError(f"{where}: the answer must be 1 or 2, not {answer!r}")
        if "_" not in sentence:
            raise UsageError(f"{where}: no _ in the sentence")
        blank = sentence.index("_")
        choices = (line[c[1] + 1 : c[2]], line[c[2] + 1 : c[3]])
        tasks.append(WinoTask(sentence[:blank], sentence[blank + 1 :], choices, int(answer) - 1))
    if not tasks:
        raise UsageError(f"{path}: no tasks in it")
    return tasks


def read_multiple_choice(path: Path) -> list[Task]:
    """llama.cpp's binary format: u32 task count, u32 offsets, then per task the question and two
    answer sets (mc1: one right answer, mc2: several, not scored), each a u32 count, the answers
    (u32 length + bytes) and an i32 label each. Little-endian, as written on x86 and ARM."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    reader = _Binary(data, path.name)
    n_task = reader.u32("the task count")
    if n_task == 0:
        raise UsageError(f"{path}: no tasks")
    reader.skip(4 * n_task, "the task offsets")
    tasks = []
    for number in range(1, n_task + 1):
        question = reader.string(f"task {number}'s question")
        endings, labels = reader.answers(number, "mc1")
        reader.answers(number, "mc2")
        if not question or not endings or not all(endings):
            raise UsageError(f"{path.name} task {number}: an empty question or answer")
        tasks.append(Task(question, tuple(endings), frozenset(i for i, lab in enumerate(labels) if lab == 1)))
    return tasks


class _Binary:
    def __init__(self, data: bytes, name: str):
        self.data, self.name, self.at = data, name, 0

    def _take(self, size: int, what: str) -> bytes:
        if self.at + size > len(self.data):
            raise UsageError(f"{self.name}: ends inside {what} (byte {self.at})")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self._take(4, what))[0])

    def skip(self, size: int, what: str) -> None:
        self._take(size, what)

    def string(self, what: str) -> str:
        size = self.u32(what)
        return self._take(size, what).decode("utf-8", errors="replace")

    def answers(self, number: int, which: str) -> tuple[list[str], list[int]]:
        what = f"task {number}'s {which} answers"
        n = self.u32(what)
        if n > MAX_ANSWERS:
            raise UsageError(f"{self.name} task {number}: {n} {which} answers (llama.cpp reads at most {MAX_ANSWERS})")
        texts = [self.string(what) for _ in range(n)]
        labels = list(struct.unpack(f"<{n}i", self._take(4 * n, what)))
        return texts, labels


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = 0
    for column in zip(*seqs):
        if any(t != column[0] for t in column):
            break
        n += 1
    return n


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def score_endings(scorer: Scorer, task: Task) -> tuple[float, ...]:
    seqs = [scorer.encode(task.context + " " + ending) for ending in task.endings]
    prefix = _common_prefix(seqs)
    if prefix == 0:
        raise UsageError("the endings share no token (the model has no BOS, the context is empty)")
    return tuple(_mean(scorer.token_logprobs(seq, prefix)) if prefix < len(seq) else math.nan for seq in seqs)


def score_winogrande(scorer: Scorer, task: WinoTask) -> tuple[float, float]:
    seqs = [scorer.encode(task.first + c + task.second) for c in task.choices]
    prefix = _common_prefix(seqs)
    skip_choice = all(len(s) - prefix > MIN_TRAILING for s in seqs)
    scores = []
    for i, seq in enumerate(seqs):
        base = len(scorer.encode(task.first + task.choices[i])) if skip_choice else prefix
        last = 1 if len(seq) - base > 1 else 0
        count = len(seq) - base - last
        if count <= 0:
            scores.append(math.nan)
            continue
        values = scorer.token_logprobs(seq, base)[:count]
        if i == 1 and not skip_choice:
            # llama.cpp's FIXME: the first token after the shared prefix, read off the logits
            # that follow the whole first choice.
            values[0] = scorer.token_logprobs([*seqs[0], seq[prefix]], len(seqs[0]))[0]
        scores.append(sum(values) / count)
    return scores[0], scores[1]


def score_item(scorer: Scorer, item: Task | WinoTask) -> Scored:
    if isinstance(item, WinoTask):
        s1, s2 = score_winogrande(scorer, item)
        return Scored((s1, s2), 0 if s1 > s2 else 1, item.answer)  # ties go to the second
    scores = score_endings(scorer, item)
    best = first_max(scores)
    return Scored(scores, best, best if best in item.answers else min(item.answers, default=-1))


def result(task: str, scored: Sequence[Scored]) -> TaskResult:
    return TaskResult(STYLE, task, "mean_logprob", tuple(scored))


def run(scorer: Scorer, task: str, items: Sequence[Task | WinoTask]) -> TaskResult:
    return result(task, [score_item(scorer, item) for item in items])


def wilson(correct: int, n: int) -> tuple[float, float]:
    """hellaswag_score's 95 % Wilson interval."""
    freq = correct / n
    z = Z * Z / n
    cnf = z * math.sqrt(n * (4.0 * freq * (1 - freq) + z)) / (Z + Z)
    return (freq + z * 0.5 - cnf) / (1.0 + z), (freq + z * 0.5 + cnf) / (1.0 + z)


def report(result: TaskResult, answers_total: int | None = None) -> list[str]:
    """llama-perplexity's closing lines for the task, with its numbers' formats."""
    n, p = result.questions, result.correct / result.questions
    if result.task == "hellaswag":
        low, high = wilson(result.correct, n)
        last = f"{n}\t{p * 100:3.8f}%\t[{low * 100:3.4f}%, {high * 100:3.4f}%]"
        return ["task\tacc_norm\t95% confidence interval", last]
    sigma = 100 * result.acc_stderr
    if result.task == "winogrande":
        return [f"Final Winogrande score({n} tasks): {100 * p:.4f} +/- {sigma:.4f}"]
    lines = [f"Final result: {100 * p:.4f} +/- {sigma:.4f}"]
    if answers_total:
        chance = n / answers_total
        lines.append(f"Random chance: {100 * chance:.4f} +/- {100 * math.sqrt(chance * (1 - chance) / (n - 1)):.4f}")
    return lines
