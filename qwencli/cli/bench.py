"""`qwen bench MODEL`: llama-bench for people who have only qwencli. Prompt processing (`-p`) and
generation (`-n`) tokens/s over `-r` runs, mean ± standard deviation, in llama-bench's table (or
`--json`). The defaults are llama-bench's, flash attention included (auto); `qwen run` loads with it
off, so `-fa off` times what a reply gets.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .errors import handle_errors
from .options import Quant, ToolThreads, Verbose


@handle_errors
def bench(
    model: Annotated[str, typer.Argument(help="A GGUF file, a catalog name or owner/repo[:quant].")],
    n_prompt: Annotated[int, typer.Option("--n-prompt", "-p", min=0, help="Prompt tokens to read (0: skip).")] = 512,
    n_gen: Annotated[int, typer.Option("--n-gen", "-n", min=0, help="Tokens to generate (0: skip).")] = 128,
    reps: Annotated[int, typer.Option("--repetitions", "-r", min=1, help="Timed runs of each test.")] = 5,
    batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="Tokens per decode of the prompt.")] = 2048,
    ubatch: Annotated[int, typer.Option("--ubatch", "-ub", min=1, help="llama.cpp's physical batch.")] = 512,
    flash_attn: Annotated[str, typer.Option("--flash-attn", "-fa", help="auto, on or off.")] = "auto",
    threads: ToolThreads = None,
    quant: Quant = None,
    json_output: Annotated[bool, typer.Option("--json", help="llama-bench's JSON rows on stdout.")] = False,
    verbose: Verbose = False,
) -> None:
    """Time prompt processing and generation, as llama.cpp's llama-bench does."""
    from ..backends.llama_bench import LlamaBenchContext
    from ..errors import UsageError
    from ..evaluate import speed
    from ..hardware import physical_cores
    from ..models.resolve import resolve
    from ..stderr import notice

    if flash_attn not in ("auto", "on", "off"):
        raise UsageError(f"--flash-attn {flash_attn!r}", "choose auto, on or off")
    if n_prompt + n_gen == 0:
        raise UsageError("nothing to time: -p and -n are both 0")
    resolved = resolve(model, quant=quant, backend="llama")
    if resolved.format != "gguf" or resolved.path is None:
        raise UsageError(f"qwen bench times GGUF models on llama.cpp, and {model} is {resolved.format}")
    threads = threads or physical_cores()
    engine = LlamaBenchContext(
        resolved.path,
        n_ctx=n_prompt + n_gen,
        batch=batch,
        ubatch=ubatch,
        threads=threads,
        flash_attn=flash_attn,
        verbose=verbose,
    )
    try:
        results = speed.run(
            engine,
            n_prompt=n_prompt,
            n_gen=n_gen,
            reps=reps,
            on_run=(lambda test, rep: notice(f"{test}: run {rep}/{reps}")) if verbose else None,
        )
    finally:
        engine.close()
    settings = {"n_threads": threads, "n_batch": batch, "n_ubatch": min(ubatch, batch), "flash_attn": flash_attn}
    if json_output:
        rows = [
            {
                "model_filename": str(resolved.path),
                "model_type": engine.description,
                "model_size": engine.size,
                "model_n_params": engine.n_params,
                **settings,
                "n_prompt": r.n_prompt,
                "n_gen": r.n_gen,
                "samples_ns": r.samples_ns,
                "samples_ts": r.samples_ts,
                "avg_ts": r.avg_ts,
                "stddev_ts": r.stdev_ts,
            }
            for r in results
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    size = f"{engine.size / 2**20:.2f} MiB" if engine.size < 2**30 else f"{engine.size / 2**30:.2f} GiB"
    count = f"{engine.n_params / 1e9:.2f} B" if engine.n_params >= 1e9 else f"{engine.n_params / 1e6:.2f} M"
    name = engine.description
    header = ["model", "size", "params", "threads", "n_batch", "n_ubatch", "fa", "test", "t/s"]
    table = [
        [name, size, count, str(threads), str(batch), str(min(ubatch, batch)), flash_attn, r.test,
         f"{r.avg_ts:.2f} ± {r.stdev_ts:.2f}"]
        for r in results
    ]  # fmt: skip
    sys.stdout.write(speed.markdown(header, table, right={1, 2, 3, 4, 5, 7, 8}) + "\n")


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(bench)
