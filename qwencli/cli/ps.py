"""`qwen ps`: what a running `qwen serve` has loaded (name, backend, context, memory, until)."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Annotated

import typer

from ..settings import DEFAULT_PORT
from .errors import handle_errors


@handle_errors
def ps(
    host: Annotated[str, typer.Option(help="Host of the server.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the server.")] = DEFAULT_PORT,
    api_key: Annotated[
        str | None, typer.Option(help="API key of the server (default: $QWEN_API_KEY).", show_default=False)
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the server's answer as JSON.")] = False,
) -> None:
    """Show the models a running qwen serve has loaded."""
    import httpx

    from .. import settings
    from ..console import human_size, table
    from ..errors import NetworkError

    key = api_key or settings.load().api_key
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}/api/ps"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError:
        raise NetworkError(f"no qwen server answers on {url_host}:{port}", "start one with: qwen serve") from None
    if response.status_code == 401:
        raise NetworkError("the server wants an API key", "pass --api-key or set QWEN_API_KEY")
    if response.status_code != 200:
        raise NetworkError(f"the server answered {response.status_code} to /api/ps (is it a qwen server?)")
    models = response.json().get("models", [])
    if json_output:
        print(json.dumps(models, indent=2))
        return
    rows = [("NAME", "BACKEND", "CONTEXT", "MEMORY", "UNTIL")]
    for m in models:
        if m.get("loading"):
            rows.append((m["name"], "-", "-", "-", "loading"))
            continue
        rows.append(
            (m["name"], m["backend"], str(m["context"]), human_size(m["memory"]) if m["memory"] else "-", _until(m))
        )
    sys.stdout.write(table(rows))


def _until(m: dict) -> str:
    if m.get("running") or m.get("waiting"):
        return f"busy ({m.get('running', 0)} running, {m.get('waiting', 0)} waiting)"
    if m.get("until") is None:
        return "forever"
    until = datetime.datetime.fromisoformat(m["until"])
    seconds = (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if seconds < 90:
        return f"{max(seconds, 0):.0f} seconds from now"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes from now"
    return f"{seconds / 3600:.1f} hours from now"


def register(app: typer.Typer) -> None:
    app.command()(ps)
