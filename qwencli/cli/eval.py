"""`qwen eval …`: what a quant costs in quality, measured as llama.cpp's tools measure it.

`ppl` (perplexity over a text) and `kld` (KL divergence against a reference, through llama.cpp's
`.kld` files) are here; each subcommand is one function in `COMMANDS`, so another measurement is
one more entry. The running values go to stderr, the result to stdout (`--json` for scripts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .errors import handle_errors
from .options import Quant, Threads, Verbose

if TYPE_CHECKING:
    from ..evaluate.source import SourceOptions

Model = Annotated[str, typer.Argument(help="A GGUF file, a catalog name or owner/repo[:quant].")]
EvalCtx = Annotated[int, typer.Option("--ctx", "-c", min=16, help="Tokens per chunk (llama-perplexity's -c).")]
Batch = Annotated[
    int, typer.Option("--batch", "-b", min=1, help="Tokens per decode; a multiple of --ctx reads chunks together.")
]
FlashAttn = Annotated[
    str, typer.Option("--flash-attn", "-fa", help="auto, on or off (llama-perplexity's default: auto).")
]
Json = Annotated[bool, typer.Option("--json", help="The result as one JSON object on stdout.")]


def source_options(
    ctx: int, batch: int, threads: int | None, flash_attn: str, quant: str | None, verbose: bool
) -> SourceOptions:
    from ..errors import UsageError
    from ..evaluate.chunks import check_batch
    from ..evaluate.source import SourceOptions

    if flash_attn not in ("auto", "on", "off"):
        raise UsageError(f"--flash-attn {flash_attn!r}", "choose auto, on or off")
    check_batch(ctx, batch)
    return SourceOptions(ctx=ctx, batch=batch, threads=threads, flash_attn=flash_attn, quant=quant, verbose=verbose)


def read_text(file: Path) -> bytes:
    """The file as llama-perplexity's -f reads it: bytes, one trailing newline dropped."""
    from ..errors import UsageError

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    return data[:-1] if data.endswith(b"\n") else data


class Progress:
    """llama-perplexity's running values on stderr: the ETA after the first pass, then `[n]ppl,`."""

    def __init__(self, n_chunk: int, n_seq: int, quiet: bool = False):
        self.n_chunk, self.n_seq, self.quiet = n_chunk, n_seq, quiet

    def on_pass(self, seconds: float) -> None:
        minutes = seconds * self.n_chunk / self.n_seq / 60
        self._write(f"{seconds:.2f} seconds per pass - ETA {minutes:.2f} minutes\n")

    def on_chunk(self, number: int, ppl: float) -> None:
        self._write(f"[{number}]{ppl:.4f},")

    def done(self) -> None:
        self._write("\n")

    def _write(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(text)
            sys.stderr.flush()


@handle_errors
def ppl(
    model: Model,
    file: Annotated[Path, typer.Argument(help="The text to score (UTF-8 or any bytes), e.g. wiki.test.raw.")],
    ctx: EvalCtx = 512,
    chunks: Annotated[
        int | None, typer.Option("--chunks", min=1, help="Score at most N chunks (default: all).", show_default=False)
    ] = None,
    batch: Batch = 2048,
    threads: Threads = None,
    flash_attn: FlashAttn = "auto",
    quant: Quant = None,
    json_output: Json = False,
    verbose: Verbose = False,
) -> None:
    """Perplexity over a text, exactly as llama.cpp's llama-perplexity computes it."""
    from ..evaluate.chunks import chunk_count
    from ..evaluate.perplexity import measure
    from ..evaluate.source import open_source

    options = source_options(ctx, batch, threads, flash_attn, quant, verbose)
    text = read_text(file)
    source = open_source(model, options)
    try:
        tokens = source.tokenize(text)
        progress = Progress(chunk_count(len(tokens), ctx, chunks), source.n_seq)
        result = measure(source, tokens, ctx=ctx, chunks=chunks, on_chunk=progress.on_chunk, on_pass=progress.on_pass)
        progress.done()
    finally:
        source.close()
    if json_output:
        fields = {"model": model, "file": str(file), **vars(result)}
        sys.stdout.write(json.dumps(fields) + "\n")
    elif result.uncertainty is None:
        sys.stdout.write(f"Final estimate: PPL = {result.ppl:.4f}\n")
    else:
        sys.stdout.write(f"Final estimate: PPL = {result.ppl:.4f} +/- {result.uncertainty:.5f}\n")


#: The subcommands of `qwen eval`, in the order `qwen eval --help` lists them.
COMMANDS = (ppl,)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="eval",
        help="Measure a model: perplexity, KL divergence against a reference.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    for command in COMMANDS:
        group.command(no_args_is_help=True)(command)
    app.add_typer(group)
