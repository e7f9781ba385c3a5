"""`qwen list` / `ls`, `qwen show`, `qwen rm`: the models in the local store (the Hugging Face cache).

None of these touch the network. Listings go to stdout (they are the answer); notes to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from .errors import handle_errors
from .options import ApiKey, Host


@handle_errors
def list_command(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON array with every field.")] = False,
    host: Host = None,
    api_key: ApiKey = None,
) -> None:
    """List downloaded models (also those other Hugging Face tools put in the same cache), or with
    --host the models an OpenAI-compatible server serves."""
    if host:
        from .remote_models import list_remote

        return list_remote(host=host, api_key=api_key, json_output=json_output)
    import json

    from ..console import counted, human_size, table
    from ..models.catalog import load as load_catalog
    from ..models.describe import capabilities
    from ..models.store import list_models

    models = list_models()
    if json_output:
        sys.stdout.write(json.dumps([m.as_json() for m in models], indent=2) + "\n")
        return
    if not models:
        from ..console import notice

        notice("no models yet: qwen pull qwen2.5-0.5b (or qwen run NAME pulls on first use)")
        return
    catalog = load_catalog()

    def can(m) -> str:
        return ", ".join(capabilities(catalog.by_repo(m.repo), m.projector, vision=m.vision)) or "-"

    rows = [("NAME", "REPO", "QUANT", "SIZE", "MODIFIED", "FORMAT", "CAPABILITIES")]
    rows += [(m.name, m.repo, m.quant, human_size(m.size), ago(m.modified), m.format, can(m)) for m in models]
    total = sum(_unique_sizes(models))
    sys.stdout.write(table(rows) + f"{counted(len(models), 'model')}, {human_size(total)} on disk\n")


def _unique_sizes(models) -> list[int]:
    import os

    seen: dict[str, int] = {}
    for m in models:
        for f in (*m.files, *([m.projector] if m.projector else [])):
            try:
                seen.setdefault(os.path.realpath(f), f.stat().st_size)
            except OSError:
                pass
    return list(seen.values())


def ago(timestamp: float) -> str:
    from ..console import counted

    seconds = max(0, time.time() - timestamp)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            return f"{counted(int(seconds // length), unit)} ago"
    return "just now"


@handle_errors
def show(
    model: Annotated[str, typer.Argument(help="A downloaded model's name (see qwen list) or a .gguf path.")],
    template: Annotated[bool, typer.Option("--template", help="Print the whole chat template.")] = False,
) -> None:
    """Show a downloaded model's facts, read from its GGUF header (no network)."""
    from ..models.describe import describe

    sys.stdout.write(describe(model, full_template=template))


@handle_errors
def rm(
    models: Annotated[list[str], typer.Argument(help="Names as qwen list shows them.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete downloaded models (a file another model shares stays)."""
    from ..console import human_size, notice
    from ..models.store import matching, remove

    targets = [m for name in models for m in matching(name)]
    targets = list({m.path: m for m in targets}.values())
    if not yes and sys.stdin.isatty():
        listing = ", ".join(f"{m.name} ({human_size(m.size)})" for m in targets)
        if not typer.confirm(f"Delete {listing}?", default=False, err=True):
            raise typer.Exit(1)
    for model in targets:
        freed = remove(model)
        notice(f"deleted {model.name} ({human_size(freed)} freed)")


def register(app: typer.Typer) -> None:
    app.command("list")(list_command)
    app.command("ls", hidden=True)(list_command)
    app.command(no_args_is_help=True)(show)
    app.command(no_args_is_help=True)(rm)
