"""`qwen doctor`: what this machine has, which backend runs which model and why, what to install."""

from __future__ import annotations

from typing import Annotated

import typer

from .errors import handle_errors


@handle_errors
def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Check this machine: OS, CPU, memory, GPUs, engines, and which backend each kind of model would use."""
    import json

    from ..diagnose import gather, render

    report = gather()
    print(json.dumps(report, indent=2) if json_output else render(report))


def register(app: typer.Typer) -> None:
    app.command()(doctor)
