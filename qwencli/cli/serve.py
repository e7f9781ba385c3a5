"""`qwen serve [MODEL…]`: the OpenAI-compatible server (see `qwencli.server`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ..settings import DEFAULT_PORT
from .errors import handle_errors
from .options import LoadFlags, load_flags, with_options

NETWORK = "Network and security"
CAPACITY = "Models and capacity"
ENGINE = "Engines (--engine vllm|sglang)"


@handle_errors
@with_options(load=load_flags)
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
    engine: Annotated[
        str | None,
        typer.Option(
            help="Run the model in vLLM or SGLang (a child process) behind this server.",
            show_default=False,
            rich_help_panel=ENGINE,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the engine's command line and why; start nothing.", rich_help_panel=ENGINE
        ),
    ] = False,
    direct: Annotated[
        bool,
        typer.Option("--direct", help="Expose the engine itself on --host/--port (no relay).", rich_help_panel=ENGINE),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            help="The engine's log (default: ~/.qwen/logs/ENGINE.log).", show_default=False, rich_help_panel=ENGINE
        ),
    ] = None,
    nodes: Annotated[
        int,
        typer.Option(min=1, help="Nodes the engine spans (prints the other nodes' commands).", rich_help_panel=ENGINE),
    ] = 1,
    head_address: Annotated[
        str | None,
        typer.Option(
            help="This node's address as the other nodes reach it.", show_default=False, rich_help_panel=ENGINE
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(min=0, help="GPUs per node (default: those visible).", show_default=False, rich_help_panel=ENGINE),
    ] = None,
    gpu_memory: Annotated[
        str | None,
        typer.Option(
            help="Memory of each GPU, e.g. 80GB (default: as probed).", show_default=False, rich_help_panel=ENGINE
        ),
    ] = None,
    tensor_parallel: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            rich_help_panel=ENGINE,
            help="--tensor-parallel-size (default: from GPUs and heads).",
        ),
    ] = None,
    pipeline_parallel: Annotated[
        int | None,
        typer.Option(
            min=1, show_default=False, rich_help_panel=ENGINE, help="--pipeline-parallel-size (default: --nodes)."
        ),
    ] = None,
    data_parallel: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            rich_help_panel=ENGINE,
            help="--data-parallel-size (replicas; headless across nodes).",
        ),
    ] = None,
    expert_parallel: Annotated[
        bool, typer.Option("--expert-parallel", rich_help_panel=ENGINE, help="--enable-expert-parallel (MoE models).")
    ] = False,
    max_model_len: Annotated[
        int | None,
        typer.Option(
            min=1, show_default=False, rich_help_panel=ENGINE, help="Context (default: trained length, cut to memory)."
        ),
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None,
        typer.Option(show_default=False, rich_help_panel=ENGINE, help="Share of each GPU the engine takes (0.9)."),
    ] = None,
    mtp: Annotated[
        int,
        typer.Option(
            min=0, max=8, rich_help_panel=ENGINE, help="MTP speculative decoding with N draft tokens (Qwen3.5+)."
        ),
    ] = 0,
    reasoning_parser: Annotated[
        str | None, typer.Option(show_default=False, rich_help_panel=ENGINE, help='Override ("" for none).')
    ] = None,
    tool_call_parser: Annotated[
        str | None,
        typer.Option(show_default=False, rich_help_panel=ENGINE, help='Override: hermes, qwen3_coder ("" for none).'),
    ] = None,
    quantization: Annotated[
        str | None,
        typer.Option(
            show_default=False, rich_help_panel=ENGINE, help="--quantization (default: the repo's config decides)."
        ),
    ] = None,
    start_timeout: Annotated[
        float, typer.Option(min=0.1, rich_help_panel=ENGINE, help="Seconds to wait for the engine to load.")
    ] = 1800.0,
    *,
    load: LoadFlags,
) -> None:
    """Serve models over OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models), Ollama's (/api/…)
    and Anthropic's Messages (/v1/messages)."""
    from .. import settings
    from ..console import warn
    from ..errors import UsageError
    from ..server.config import ServerConfig, is_loopback
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
    if engine is not None or dry_run:
        from ..engines.plan import Overrides

        if len(models or ()) != 1:
            raise UsageError("--engine serves one model: qwen serve MODEL --engine vllm")
        overrides = Overrides(
            tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel, data_parallel=data_parallel,
            expert_parallel=expert_parallel, max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization, mtp_tokens=mtp, reasoning_parser=reasoning_parser,
            tool_call_parser=tool_call_parser, quantization=quantization,
        )  # fmt: skip
        config = ServerConfig(host=host, api_key=key, cors_origins=tuple(cors_origin or ()))
        raise typer.Exit(
            _serve_engine(
                (models or [""])[0], engine or "vllm", overrides, config, port=port, direct=direct, dry_run=dry_run,
                log_file=log_file, machine=(gpus, gpu_memory, nodes, head_address), start_timeout=start_timeout,
            )
        )  # fmt: skip
    config = ServerConfig(
        host=host,
        aliases=tuple(aliases),
        allow_pull=allow_pull,
        allow_delete=allow_delete,
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


def _serve_engine(model, engine, overrides, config, *, port, direct, dry_run, log_file, machine, start_timeout) -> int:
    from ..console import notice
    from ..engines.run import EngineServe, dry_run_text, plan_for, serve_engine

    gpus, gpu_memory, nodes, head_address = machine
    request = EngineServe(
        model=model, engine=engine, machine=_machine(gpus, gpu_memory, nodes, head_address), overrides=overrides,
        config=config, port=port, direct=direct, log_file=log_file, start_timeout=start_timeout,
    )  # fmt: skip
    if dry_run:
        plan = plan_for(request)
        for line in plan.reasons:
            notice(f"{engine}: {line}")
        print(dry_run_text(plan))
        return 0
    return serve_engine(request)


def _machine(gpus: int | None, gpu_memory: str | None, nodes: int, head_address: str | None):
    """The machine as described on the command line, the rest probed (nvidia-smi; torch is not imported)."""
    from ..engines.plan import Machine
    from ..hardware import probe_hardware

    found = () if gpus is not None and gpu_memory is not None else probe_hardware().gpus
    count = gpus if gpus is not None else len(found)
    memory = parse_size(gpu_memory) if gpu_memory else min((g.total_bytes for g in found), default=0)
    return Machine(gpus=count, gpu_bytes=memory, nodes=nodes, head_address=head_address)


def parse_size(text: str) -> int:
    """Bytes for `80GB`, `80G`, `24GiB`, `81920MiB` (GPU memory is quoted in binary units either way)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT])?(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        from ..errors import UsageError

        raise UsageError(f"--gpu-memory takes a size like 80GB, not {text!r}")
    return int(float(match[1]) * (1 << {"K": 10, "M": 20, "G": 30, "T": 40, None: 0}[(match[2] or "").upper() or None]))


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
