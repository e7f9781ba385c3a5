"""`qwen eval compare RESULT.json [REFERENCE.json]`: a `qwen eval mc|gen --json` result beside
Qwen's published numbers and beside a reference run, with deltas (`evaluate/compare.py`); results
of different styles are refused, not set side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import handle_errors


@handle_errors
def compare(
    result: Annotated[Path, typer.Argument(help="A result: qwen eval mc|gen … --json > RESULT.json.")],
    other: Annotated[
        Path | None, typer.Argument(help="A reference run of the same style and task.", show_default=False)
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="The published model to set it beside (default: from the result's model name), e.g. qwen1.5-7b, "
            "qwen1.5-7b-chat.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """A result beside Qwen's published table and a reference run, with deltas."""
    from ..evaluate.compare import compare as build
    from ..evaluate.compare import read_result

    mine = read_result(result)
    theirs = read_result(other) if other is not None else None
    rows, beside = build(mine, theirs, reference)
    if json_output:
        out = {**beside, "rows": [{**vars(r), "delta": r.delta, "delta_published": r.delta_published} for r in rows]}
        sys.stdout.write(json.dumps(out) + "\n")
        return
    sys.stdout.write(f"--style {beside['style']}, {beside['task']}: {mine.get('model', result.name)}\n")
    width = max([10, *(len(r.metric) + 2 for r in rows)])
    header = f"{'metric':<{width}}{'this run':>10}"
    if theirs is not None:
        header += f"{'reference':>11}{'Δ':>8}"
    if "reference" in beside:
        header += f"{beside['reference']:>19}{'Δ':>8}"
    sys.stdout.write(header + "\n")
    for r in rows:
        line = f"{r.metric:<{width}}{r.value:>10.2f}"
        if theirs is not None:
            line += f"{r.other:>11.2f}{r.delta:>+8.2f}" if r.other is not None else f"{'-':>11}{'':>8}"
        if "reference" in beside:
            line += f"{r.published:>19.2f}{r.delta_published:>+8.2f}" if r.published is not None else f"{'-':>19}"
        sys.stdout.write(line + "\n")
    if "source" in beside:
        sys.stdout.write(f"published: {beside['reference']}, OpenCompass {beside['preset']}, {beside['source']}\n")
    if "note" in beside:
        sys.stdout.write(f"note: {beside['note']}\n")


def register(group: typer.Typer) -> None:
    group.command(no_args_is_help=True)(compare)
