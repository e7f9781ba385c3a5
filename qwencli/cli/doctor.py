"""`qwen doctor`: what this machine has, which backend runs which model and why, what to install."""

from __future__ import annotations

from typing import Annotated

import typer

from .errors import handle_errors


@handle_errors
def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    engine_model: Annotated[
        str, typer.Option(help="The model whose `qwen serve --engine vllm` command to show.")
    ] = "qwen3.6-35b-a3b",
) -> None:
    """Check this machine: OS, CPU, memory, GPUs, engines, and which backend each kind of model would use."""
    import json

    from ..diagnose import gather, render

    report = gather(engine_model=engine_model)
    print(json.dumps(report, indent=2) if json_output else render(report))


def register(app: typer.Typer) -> None:
    app.command()(doctor)
