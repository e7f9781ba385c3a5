"""`qwen serve MODEL --engine vllm|sglang`'s options, one group (`with_options(engines=engine_flags)`), and the
step from them to `engines.run`: the machine as described or probed, the overrides, `--dry-run`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..engines.plan import Machine, Overrides
    from ..server.config import ServerConfig

ENGINE = "Engines (--engine vllm|sglang)"


@dataclass(frozen=True)
class EngineFlags:
    engine: str | None  # None: no engine, qwen serve runs the model itself
    dry_run: bool
    direct: bool
    log_file: Path | None
    machine: tuple[int | None, str | None, int, str | None]  # gpus, gpu memory, nodes, head address
    overrides: Overrides
    start_timeout: float


def engine_flags(
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
) -> EngineFlags:
    """The flags of `qwen serve --engine`."""
    from ..engines.plan import Overrides

    overrides = Overrides(
        tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel, data_parallel=data_parallel,
        expert_parallel=expert_parallel, max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
        mtp_tokens=mtp, reasoning_parser=reasoning_parser, tool_call_parser=tool_call_parser, quantization=quantization,
    )  # fmt: skip
    return EngineFlags(
        engine=engine or ("vllm" if dry_run else None),  # --dry-run alone shows vLLM's command
        dry_run=dry_run, direct=direct, log_file=log_file, machine=(gpus, gpu_memory, nodes, head_address),
        overrides=overrides, start_timeout=start_timeout,
    )  # fmt: skip


def serve_engine(model: str, flags: EngineFlags, config: ServerConfig, *, port: int) -> int:
    from ..console import notice
    from ..engines import run

    request = run.EngineServe(
        model=model, engine=flags.engine or "vllm", machine=machine(*flags.machine), overrides=flags.overrides,
        config=config, port=port, direct=flags.direct, log_file=flags.log_file, start_timeout=flags.start_timeout,
    )  # fmt: skip
    if flags.dry_run:
        plan = run.plan_for(request)
        for line in plan.reasons:
            notice(f"{request.engine}: {line}")
        print(run.dry_run_text(plan))
        return 0
    return run.serve_engine(request)


def machine(gpus: int | None, gpu_memory: str | None, nodes: int, head_address: str | None) -> Machine:
    """The machine as described on the command line, the rest probed (nvidia-smi; torch is not imported)."""
    from ..engines.plan import Machine
    from ..hardware import probe_hardware

    found = () if gpus is not None and gpu_memory is not None else probe_hardware().gpus
    count = gpus if gpus is not None else len(found)
    # Total, not free: vLLM's --gpu-memory-utilization is a share of each GPU's total memory.
    memory = parse_size(gpu_memory) if gpu_memory else min((g.total_bytes for g in found), default=0)
    return Machine(gpus=count, gpu_bytes=memory, nodes=nodes, head_address=head_address)


def parse_size(text: str) -> int:
    """Bytes for `80GB`, `80G`, `24GiB`, `81920MiB` (GPU memory is quoted in binary units either way)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT])?(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        from ..errors import UsageError

        raise UsageError(f"--gpu-memory takes a size like 80GB, not {text!r}")
    unit = (match[2] or "").upper()
    return int(float(match[1]) * (1 << {"K": 10, "M": 20, "G": 30, "T": 40, "": 0}[unit]))
