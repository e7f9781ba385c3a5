"""`--style opencompass`: the three multiple-choice presets behind Qwen's published tables, as
OpenCompass's own configs build and score them (open-compass/opencompass):

- MMLU, `configs/datasets/mmlu/mmlu_ppl_ac766d.py` (what `mmlu_ppl` names): the hint "The
  following are multiple choice questions (with answers) about  {subject}." (two spaces: the
  config's f-string), dev rows 0-4 as shots (`FixKRetriever(fix_id_list=[0, 1, 2, 3, 4])`), one
  full prompt per letter ending "Answer: X"; the lowest PPL wins (`PPLInferencer`); MMLU is the
  plain mean over the subjects' accuracies.
- HellaSwag, `configs/datasets/hellaswag/hellaswag_10shot_ppl_59c85e.py`: "Continue the
  following text …" hint, train rows 0-9 as shots, options "A) …", "What is the right option?",
  one full prompt per letter, lowest PPL.
- Winogrande, `configs/datasets/winogrande/winogrande_5shot_ll_252f01.py`: shots are train_xs
  rows 0, 2, 4, 6, 8 written as their right sentence; each option's sentence after them, scored by
  `LLInferencer`: the summed log-prob of the text after the blank; the highest wins.

Shots are joined as OpenCompass's `BaseRetriever.generate_ice` joins them: "\\n" between, "\\n"
after. "PPL" is `HuggingFace.get_ppl` (opencompass/models/huggingface.py): the NLL summed over
the prompt's tokens after the first, divided by the count of all its tokens (the first
included). The prompt is tokenized by the GGUF's own tokenizer (BOS if its vocabulary asks, as
`add_special_tokens=True` does for a Hugging Face tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .mc_result import Scored, TaskResult, first_max, first_min
from .scoring import Scorer

STYLE = "opencompass"
LETTERS = "ABCD"
MMLU_SHOTS = (0, 1, 2, 3, 4)
HELLASWAG_SHOTS = tuple(range(10))
WINOGRANDE_SHOTS = (0, 2, 4, 6, 8)
HELLASWAG_HINT = "Continue the following text without adding any additional information or formatting:"


@dataclass(frozen=True)
class Choice4:
    """An MMLU or HellaSwag question: a text, four options, the right one's index."""

    text: str
    options: tuple[str, str, str, str]
    answer: int
    group: str | None = None  # MMLU's subject


@dataclass(frozen=True)
class Blank:
    """A Winogrande sentence with its blank `_` and the two fillers."""

    sentence: str
    options: tuple[str, str]
    answer: int

    def filled(self, index: int) -> str:
        return self.sentence.replace("_", self.options[index])

    @property
    def after_blank(self) -> str:
        return self.sentence.split("_")[1]


def _ice(items: Sequence[str]) -> str:
    return "\n".join(items) + "\n"


def _mmlu_question(q: Choice4) -> str:
    a, b, c, d = q.options
    return f"{q.text}\nA. {a}\nB. {b}\nC. {c}\nD. {d}"


def mmlu_prompts(q: Choice4, shots: Sequence[Choice4]) -> list[str]:
    subject = (q.group or "").replace("_", " ")
    hint = f"The following are multiple choice questions (with answers) about  {subject}.\n\n"
    ice = _ice([f"{_mmlu_question(s)}\nAnswer: {LETTERS[s.answer]}\n" for s in shots])
    return [f"{hint}{ice}{_mmlu_question(q)}\nAnswer: {letter}" for letter in LETTERS]


def _hellaswag_question(q: Choice4) -> str:
    a, b, c, d = q.options
    return f"{q.text}\nA) {a}\nB) {b}\nC) {c}\nD) {d}\nWhat is the right option?"


def hellaswag_prompts(q: Choice4, shots: Sequence[Choice4]) -> list[str]:
    ice = _ice([f"{_hellaswag_question(s)}\n{LETTERS[s.answer]}\n" for s in shots])
    return [f"{HELLASWAG_HINT}\n{ice}{_hellaswag_question(q)}\n{letter}" for letter in LETTERS]


def winogrande_prompts(q: Blank, shots: Sequence[Blank]) -> list[str]:
    ice = _ice([s.filled(s.answer) for s in shots])
    return [ice + q.filled(i) for i in range(2)]


def ppl(scorer: Scorer, prompt: str) -> float:
    """`get_ppl` of one prompt: NLL summed after the first token, over the count of all tokens."""
    tokens = scorer.encode(prompt)
    return -sum(scorer.token_logprobs(tokens, 1)) / len(tokens)


def loglikelihood(scorer: Scorer, prompt: str, continuation: str) -> float:
    """`get_loglikelihood`: the context is the prompt with the continuation's text removed
    (`str.replace`, every occurrence, as OpenCompass does), the continuation is what the whole
    prompt's tokens have past the context's count."""
    tokens = scorer.encode(prompt)
    n_context = len(scorer.encode(prompt.replace(continuation, "")))
    if n_context >= len(tokens):
        return 0.0  # an empty slice sums to 0 there too
    return sum(scorer.token_logprobs(tokens, n_context))


def score_choice4(scorer: Scorer, task: str, q: Choice4, shots: dict[str | None, list[Choice4]]) -> Scored:
    """One MMLU question (its subject's shots) or HellaSwag one (the shots under the key None)."""
    build = mmlu_prompts if task == "mmlu" else hellaswag_prompts
    scores = tuple(ppl(scorer, p) for p in build(q, shots[q.group]))
    return Scored(scores, first_min(scores), q.answer, q.group if task == "mmlu" else None)


def score_blank(scorer: Scorer, q: Blank, shots: Sequence[Blank]) -> Scored:
    scores = tuple(loglikelihood(scorer, p, q.after_blank) for p in winogrande_prompts(q, shots))
    return Scored(scores, first_max(scores), q.answer)


def result(task: str, scored: Sequence[Scored]) -> TaskResult:
    return TaskResult(STYLE, task, "loglikelihood" if task == "winogrande" else "ppl", tuple(scored))


def run_choice4(
    scorer: Scorer, task: str, questions: Sequence[Choice4], shots: dict[str | None, list[Choice4]]
) -> TaskResult:
    return result(task, [score_choice4(scorer, task, q, shots) for q in questions])


def run_winogrande(scorer: Scorer, questions: Sequence[Blank], shots: Sequence[Blank]) -> TaskResult:
    return result("winogrande", [score_blank(scorer, q, shots) for q in questions])
