"""`qwen eval mc MODEL DATA --style S [--task T]`: multiple-choice accuracy, in a named style.

The style is named, never implied, and it travels with the result (`--json` has it, and
`qwen eval compare` refuses to set two styles side by side): `lm-eval` is lm-eval-harness's acc
and acc_norm (`evaluate/multiple_choice.py`), what `lm_eval --model local-completions` against
`qwen serve` reports for the same data; `opencompass` the presets behind Qwen's tables
(`evaluate/opencompass.py`); `llama.cpp` llama-perplexity's tasks (`evaluate/llamacpp_tasks.py`).
Every finished question goes to a journal (printed at the start: its choices' scores, so the
result is recomputed from it); the same command again resumes it, and Ctrl-C says so. Progress
with an ETA on stderr, the result on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import handle_errors
from .options import ApiKey, Ctx, Host, JournalFile, Limit, Quant, Threads

STYLES = ("lm-eval", "opencompass", "llama.cpp")
#: The tasks each preset style knows; lm-eval scores any JSONL of questions.
TASKS = {
    "opencompass": ("mmlu", "hellaswag", "winogrande"),
    "llama.cpp": ("hellaswag", "winogrande", "multiple-choice"),
}


@handle_errors
def mc(
    model: Annotated[str, typer.Argument(help="A GGUF file, a catalog name or owner/repo[:quant].")],
    data: Annotated[
        Path | None,
        typer.Argument(
            help="lm-eval: JSONL/CSV/Parquet questions. opencompass: the data set's folder. "
            "llama.cpp: its --hellaswag/--winogrande/--multiple-choice file.",
            show_default=False,
        ),
    ] = None,
    style: Annotated[str, typer.Option("--style", help="How to score: lm-eval, opencompass or llama.cpp.")] = "",
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="opencompass: mmlu, hellaswag, winogrande. llama.cpp: hellaswag, winogrande, multiple-choice.",
            show_default=False,
        ),
    ] = None,
    hf_dataset: Annotated[
        str | None,
        typer.Option("--hf-dataset", help="opencompass: the data set on the hub (cais/mmlu, …).", show_default=False),
    ] = None,
    subset: Annotated[
        str | None, typer.Option("--subset", help="The hub data set's configuration (all, winogrande_xs, …).")
    ] = None,
    limit: Limit = None,
    journal: JournalFile = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    ctx: Ctx = None,
    quant: Quant = None,
    threads: Threads = None,
    host: Host = None,
    api_key: ApiKey = None,
) -> None:
    """Multiple-choice accuracy of MODEL on DATA (in this process, or on the server --host)."""
    from ..errors import UsageError
    from ..evaluate.journal import Journal, default_path, model_identity, run_resumably
    from ..evaluate.mc_run import mc_task, run
    from ..evaluate.progress import QuestionProgress
    from ..evaluate.scoring import Scorer

    if style not in STYLES:
        raise UsageError(f"--style {style!r}: not a scoring style" if style else "no --style given",
                         f"use --style {', '.join(STYLES)} (the style is named, never implied)")  # fmt: skip
    tasks = TASKS.get(style, ())
    if tasks and task not in tasks:
        raise UsageError(f"--style {style} needs --task: one of {', '.join(tasks)}")
    if not tasks and task is not None:
        raise UsageError("--style lm-eval scores any questions file; --task names a preset of the other styles")
    if hf_dataset is not None and style != "opencompass":
        raise UsageError("--hf-dataset loads the presets' data sets: use it with --style opencompass")
    if (data is None) == (hf_dataset is None):
        raise UsageError("give the data: a local path, or --hf-dataset NAME (not both)")
    load = _Load(style, task, data, hf_dataset, subset, limit)
    items = load.items()  # read before the model loads: a data error costs no load
    # --quant picks another file of a name; --ctx moves lm-eval's left cut of a long context.
    header = {"command": "mc", "model": model_identity(model, host), "quant": quant, "style": style, "task": task,
              "ctx": ctx, **load.identity()}  # fmt: skip
    path = journal or default_path(header, "mc", style, task or "", Path(model).stem)
    log = Journal.open(path, header)  # before the load too: another run's journal is refused at once
    backend = None
    try:
        backend = _open(model, host=host, api_key=api_key, ctx=ctx, quant=quant, threads=threads)
        scorer = Scorer(backend, backend.tokenizer_info()["model_max_length"])
        mc = mc_task(style, task, items, scorer, load.shots)
        result = run_resumably(log, mc.ids, lambda: run(mc, log, QuestionProgress(task or style)))
    finally:
        log.close()
        if backend is not None:
            backend.close()
    where = hf_dataset if hf_dataset is not None else str(data)
    if json_output:
        sys.stdout.write(json.dumps({"model": model, "data": where, **result.to_json(), "journal": str(path)}) + "\n")
        return
    _print(model, where, style, task, result, load.answers_total)


class _Load:
    """The questions of one style and task, and what pins them in the journal."""

    def __init__(self, style: str, task: str | None, data: Path | None, hub: str | None, subset: str | None,
                 limit: int | None):  # fmt: skip
        self.style, self.task, self.data, self.hub, self.subset, self.limit = style, task, data, hub, subset, limit
        self.shots: dict[Any, Any] = {}
        self.answers_total: int | None = None

    def items(self) -> list[Any]:
        if self.style == "lm-eval":
            from ..evaluate.datasets import read_questions

            assert self.data is not None
            return read_questions(self.data)[: self.limit]
        if self.style == "opencompass":
            from ..evaluate import opencompass_data

            source: opencompass_data.Source = (
                self.data if self.data is not None else opencompass_data.Hub(self.hub or "", self.subset)
            )
            loaded = opencompass_data.load(self.task or "", source)
            self.shots = loaded.shots
            return loaded.questions[: self.limit]
        from ..evaluate import llamacpp_tasks as lt

        assert self.data is not None
        items: list[Any]
        if self.task == "hellaswag":
            items = lt.read_hellaswag(self.data)
        elif self.task == "winogrande":
            items = lt.read_winogrande(self.data)
            if len(items) > 1 and (self.limit is None or self.limit >= len(items)):
                from ..stderr import notice

                # perplexity.cpp's reader: `-f` drops the file's final newline, and its getline loop
                # stops at end of file before it handles the line it just read (b11312).
                notice(
                    f"all {len(items)} tasks are scored; llama-perplexity --winogrande leaves out a file's "
                    f"last line and scores {len(items) - 1}: compare with --limit {len(items) - 1}"
                )
        else:
            items = lt.read_multiple_choice(self.data)
        items = items[: self.limit]
        self.answers_total = sum(len(i.endings) for i in items if isinstance(i, lt.Task)) or None
        return items

    def identity(self) -> dict[str, Any]:
        """What pins the questions in the journal's header (a hub data set by its name: its
        revision is the hub's to change)."""
        from ..evaluate.journal import data_sha256

        if self.data is None:
            return {"data": f"hub:{self.hub}", "subset": self.subset}
        return {"data": str(self.data.resolve()), "data_sha256": data_sha256(self.data)}


def _print(model: str, where: str, style: str, task: str | None, result: Any, answers_total: int | None) -> None:
    name = Path(where).name if Path(where).exists() else where
    what = f"--style {style}" + (f" --task {task}" if task else "")
    sys.stdout.write(f"{model} on {name} ({result.questions if task else len(result.answers)} questions, {what})\n")
    if style == "lm-eval":
        for label, value, err in (
            ("acc", result.acc, result.acc_stderr),
            ("acc_norm", result.acc_norm, result.acc_norm_stderr),
        ):
            sys.stdout.write(f"{label:<9}{value:.4f} ± {err:.4f}\n")
    elif style == "llama.cpp":
        from ..evaluate.llamacpp_tasks import report

        sys.stdout.write("\n".join(report(result, answers_total)) + "\n")
    else:
        for subject, acc in result.groups().items():
            sys.stdout.write(f"  {subject:<40}{100 * acc:6.2f}\n")
        label = f"{task} (mean over {len(result.groups())} subjects)" if result.groups() else str(task)
        sys.stdout.write(f"{label}: {100 * result.acc:.2f}\n")


def _open(
    model: str, *, host: str | None, api_key: str | None, ctx: int | None, quant: str | None, threads: int | None
) -> Any:
    """What the scorer reads: MODEL on the server --host, else the GGUF loaded here."""
    from ..errors import UsageError

    if host is not None:
        from ..evaluate.server_scoring import ServerModel
        from ..models.hosted import host_endpoint

        return ServerModel(host_endpoint(host, api_key, model=model))
    from ..backends.base import LoadOptions
    from ..backends.llamacpp import LlamaCppBackend
    from ..models.resolve import resolve

    resolved = resolve(model, quant=quant, backend="llama")
    if resolved.format != "gguf" or resolved.path is None:
        raise UsageError(f"qwen eval mc runs GGUF models on llama.cpp, and {model} is {resolved.format}")
    return LlamaCppBackend(resolved.path, LoadOptions(context_length=ctx, threads=threads), name=model)


def register(group: typer.Typer) -> None:
    group.command(no_args_is_help=True)(mc)
