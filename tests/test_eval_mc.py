"""`qwen eval mc`'s parts that need no model: reading questions, lm-eval's metrics and its
tokenization of a (context, continuation) pair, over a fake tokenizer at the `Evaluating` seam."""

from __future__ import annotations

import json
import math

import pytest

from qwencli.errors import UsageError
from qwencli.evaluate.datasets import read_questions
from qwencli.evaluate.multiple_choice import Answer, McResult, _argmax
from qwencli.evaluate.scoring import Scorer


def write(tmp_path, *rows) -> object:
    path = tmp_path / "q.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_questions_in_the_common_shapes(tmp_path):
    path = write(
        tmp_path,
        {"question": "Q1", "choices": ["a", "b"], "answer": 1},
        "",
        {"query": "Q2", "choices": {"text": ["x", "y", "z"], "label": ["A", "B", "C"]}, "answerKey": "C"},
        {"ctx": "Q3", "endings": ["e1", "e2", "e3", "e4"], "label": "2"},
        {"context": "Q4", "choices": ["yes", "no"], "answer": "no"},
    )
    got = [(q.context, q.choices, q.answer) for q in read_questions(path)]
    assert got == [("Q1", ("a", "b"), 1), ("Q2", ("x", "y", "z"), 2), ("Q3", ("e1", "e2", "e3", "e4"), 2),
                   ("Q4", ("yes", "no"), 1)]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "line 1: not JSON"),
        ({"choices": ["a", "b"], "answer": 0}, "no context"),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, "answer 2 is not one of the 2 choices"),
        ({"question": "q", "choices": ["a"], "answer": 0}, "at least two"),
        ({"question": "q", "choices": ["a", "b"], "answer": True}, "is not one of"),
    ],
)
def test_a_misread_question_is_an_error_naming_its_line(tmp_path, row, message):
    with pytest.raises(UsageError, match=message):
        read_questions(write(tmp_path, row))


def test_acc_acc_norm_and_stderr_as_lm_eval_computes_them():
    # 10 of 12 right: lm-eval prints 0.8333 ± 0.1124 for this.
    answers = [Answer((0.0,), 0, 0, 0)] * 10 + [Answer((0.0,), 1, 0, 0)] * 2
    result = McResult("lm-eval", tuple(answers))
    assert result.acc == pytest.approx(10 / 12)
    assert result.acc_norm == 1.0
    assert round(result.acc_stderr, 4) == 0.1124
    assert result.acc_norm_stderr == 0.0
    assert _argmax([-1.0, -0.5, -0.5]) == 1  # the first of equal values, as numpy's argmax
    assert math.isnan(McResult("lm-eval", (answers[0],)).acc_stderr)


class Words:
    """A tokenizer at the seam: each space-led word is a token (" Paris" and "Paris" differ)."""

    def __init__(self):
        self.vocab: dict[str, int] = {"<bos>": 0}

    def tokenize_text(self, text: str, *, add_special: bool) -> list[int]:
        pieces, word = [], ""
        for ch in text:
            if ch == " " and word.strip():
                pieces.append(word)
                word = ""
            word += ch
        if word:
            pieces.append(word)
        return [self.vocab.setdefault(p, len(self.vocab)) for p in pieces]

    def tokenizer_info(self):
        return {"bos_token": "<bos>", "eos_token": None}


def test_the_pair_is_tokenized_as_lm_eval_does():
    words = Words()
    scorer = Scorer(words, 2048)  # type: ignore[arg-type]
    ctx, cont = scorer.encode_pair("The capital is ", "Paris")  # the trailing space moves to the continuation
    assert cont == words.tokenize_text(" Paris", add_special=False)
    assert ctx == words.tokenize_text("The capital is", add_special=False)
    assert scorer.encode_pair("", " Paris") == ([0], words.tokenize_text(" Paris", add_special=False))
