"""`qwen serve [MODEL…]`: the OpenAI-compatible server (see `qwencli.server`)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from ..settings import DEFAULT_PORT
from .engine_options import EngineFlags, engine_flags
from .errors import handle_errors
from .options import LoadFlags, load_flags, with_options

NETWORK = "Network and security"
CAPACITY = "Models and capacity"


@handle_errors
@with_options(load=load_flags, engines=engine_flags)
def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to load at start (names or .gguf files). Others in the store load on first use.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.", rich_help_panel=NETWORK)] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one (printed).", rich_help_panel=NETWORK)
    ] = DEFAULT_PORT,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Require 'Authorization: Bearer KEY' (default: $QWEN_API_KEY).",
            show_default=False,
            rich_help_panel=NETWORK,
        ),
    ] = None,
    insecure_no_key: Annotated[
        bool,
        typer.Option(
            "--insecure-no-key", help="Allow a non-loopback --host without an API key.", rich_help_panel=NETWORK
        ),
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Allow browser requests from this origin (repeatable; default: none).",
            show_default=False,
            rich_help_panel=NETWORK,
        ),
    ] = None,
    keep_alive: Annotated[
        str,
        typer.Option(help="Unload a model idle this long: 30s, 5m, 1h; 0 at once; -1 never.", rich_help_panel=CAPACITY),
    ] = "5m",
    parallel: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Requests decoded together per model (batched; each gets its own context of --ctx tokens).",
            rich_help_panel=CAPACITY,
        ),
    ] = 1,
    max_queue: Annotated[
        int,
        typer.Option(
            min=0, max=10_000, help="Requests that may wait per model; more get 429.", rich_help_panel=CAPACITY
        ),
    ] = 32,
    alias: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=MODEL: requests for NAME (say claude-sonnet-4-5) run MODEL (repeatable).",
            show_default=False,
            rich_help_panel=CAPACITY,
        ),
    ] = None,
    allow_pull: Annotated[
        bool, typer.Option("--allow-pull", help="Let Ollama's /api/pull download models.", rich_help_panel=NETWORK)
    ] = False,
    allow_delete: Annotated[
        bool,
        typer.Option("--allow-delete", help="Let Ollama's /api/delete remove models.", rich_help_panel=NETWORK),
    ] = False,
    allow_image_urls: Annotated[
        bool,
        typer.Option(
            "--allow-image-urls",
            help="Fetch http(s) image URLs in requests (public addresses only, 20 MiB, 10 s). Off: base64 only.",
            rich_help_panel=NETWORK,
        ),
    ] = False,
    *,
    load: LoadFlags,
    engines: EngineFlags,
) -> None:
    """Serve models over OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models), Ollama's (/api/…)
    and Anthropic's Messages (/v1/messages)."""
    from .. import settings
    from ..console import warn
    from ..errors import UsageError
    from ..server.config import ServerConfig, is_loopback
    from ..server.image_urls import ImageUrlPolicy
    from .options import check_backend

    key = api_key or settings.load().api_key
    if not is_loopback(host):
        if not key and not insecure_no_key:
            raise UsageError(
                f"refusing to listen on {host} without an API key: anyone on the network could use it",
                "set --api-key (or QWEN_API_KEY), or pass --insecure-no-key if that is really intended",
            )
        if not key:
            warn(f"listening on {host} without an API key: anyone who can reach this port can use the models")
    for origin in cors_origin or ():
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise UsageError(f"--cors-origin takes an origin like https://example.com, not {origin!r}")
    aliases = []
    for item in alias or ():
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise UsageError(f"--alias takes NAME=MODEL, not {item!r}")
        aliases.append((name.strip(), target.strip()))
    if engines.engine is not None:
        from .engine_options import serve_engine

        if len(models or ()) != 1:
            raise UsageError("--engine serves one model: qwen serve MODEL --engine vllm")
        config = ServerConfig(host=host, api_key=key, cors_origins=tuple(cors_origin or ()))
        raise typer.Exit(serve_engine((models or [""])[0], engines, config, port=port))
    config = ServerConfig(
        host=host,
        aliases=tuple(aliases),
        allow_pull=allow_pull,
        allow_delete=allow_delete,
        image_urls=ImageUrlPolicy() if allow_image_urls else None,
        api_key=key,
        cors_origins=tuple(cors_origin or ()),
        parallel=parallel,
        max_queue=max_queue,
        keep_alive=parse_duration(keep_alive),
        load=load.options,
        backend=check_backend(load.backend),
    )
    from ..server.run import run_server

    raise typer.Exit(run_server(config, list(models or ()), port=port, verbose=load.verbose))


def parse_duration(text: str) -> float | None:
    """Seconds for `30s`, `5m`, `1h`, `90`; None (forever) for a negative value."""
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not match:
        from ..errors import UsageError

        raise UsageError(f"--keep-alive takes a duration like 30s, 5m or 1h, not {text!r}")
    value = float(match[1])
    if value < 0:
        return None
    return value * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match[2]]


def register(app: typer.Typer) -> None:
    app.command()(serve)
