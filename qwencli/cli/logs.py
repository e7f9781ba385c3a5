"""`qwen logs [ENGINE]`: the log of the engine `qwen serve --engine` runs (its default --log-file)."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from .errors import handle_errors


@handle_errors
def logs(
    engine: Annotated[str, typer.Argument(help="vllm or sglang.")] = "vllm",
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Last lines to print.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing lines as they are written.")] = False,
) -> None:
    """Print the log of the engine `qwen serve MODEL --engine ENGINE` started."""
    from collections import deque

    from .. import settings
    from ..errors import UsageError

    path = settings.load().home / "logs" / f"{engine}.log"
    if not path.is_file():
        raise UsageError(f"no {engine} log at {path}", f"start one with: qwen serve MODEL --engine {engine}")
    with open(path, encoding="utf-8", errors="replace") as f:
        sys.stdout.writelines(deque(f, maxlen=lines) if lines else ())
        sys.stdout.flush()
        while follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)


def register(app: typer.Typer) -> None:
    app.command()(logs)
