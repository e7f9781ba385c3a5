"""`qwen eval`: the group of evaluation commands (one module each)."""

from __future__ import annotations

import typer

from . import eval_mc as _mc

group = typer.Typer(name="eval", help="Measure what a model scores: multiple choice.", no_args_is_help=True)
_mc.register(group)


def register(app: typer.Typer) -> None:
    app.add_typer(group)
