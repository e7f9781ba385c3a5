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

from ..evaluate.source import SourceOptions  # a dataclass: light (numpy comes with the measurements)
from . import eval_compare as _eval_compare
from . import eval_gen as _gen
from . import eval_mc as _mc
from .errors import handle_errors
from .options import Backend, Device, Quant, ToolThreads, Verbose, check_backend, with_options

if TYPE_CHECKING:
    from ..evaluate.kld import KldRow

Model = Annotated[str, typer.Argument(help="A GGUF file, a catalog name or owner/repo[:quant].")]
EvalCtx = Annotated[int, typer.Option("--ctx", "-c", min=16, help="Tokens per chunk (llama-perplexity's -c).")]
Batch = Annotated[
    int, typer.Option("--batch", "-b", min=1, help="Tokens per decode; a multiple of --ctx reads chunks together.")
]
FlashAttn = Annotated[
    str, typer.Option("--flash-attn", "-fa", help="auto, on or off (llama-perplexity's default: auto).")
]
Json = Annotated[bool, typer.Option("--json", help="The result as one JSON object on stdout.")]


def measure_flags(
    ctx: EvalCtx = 512,
    batch: Batch = 2048,
    threads: ToolThreads = None,
    flash_attn: FlashAttn = "auto",
    quant: Quant = None,
    backend: Backend = "auto",
    device: Device = None,
    verbose: Verbose = False,
) -> SourceOptions:
    """How `ppl` and `kld` read a model (`@with_options(options=measure_flags)`)."""
    from ..errors import UsageError
    from ..evaluate.chunks import check_batch

    if flash_attn not in ("auto", "on", "off"):
        raise UsageError(f"--flash-attn {flash_attn!r}", "choose auto, on or off")
    check_batch(ctx, batch)
    return SourceOptions(
        ctx=ctx,
        batch=batch,
        threads=threads,
        flash_attn=flash_attn,
        quant=quant,
        verbose=verbose,
        backend=check_backend(backend),
        device=device,
    )


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
@with_options(options=measure_flags)
def ppl(
    model: Model,
    file: Annotated[Path, typer.Argument(help="The text to score (UTF-8 or any bytes), e.g. wiki.test.raw.")],
    chunks: Annotated[
        int | None, typer.Option("--chunks", min=1, help="Score at most N chunks (default: all).", show_default=False)
    ] = None,
    json_output: Json = False,
    *,
    options: SourceOptions,
) -> None:
    """Perplexity over a text, exactly as llama.cpp's llama-perplexity computes it."""
    from ..evaluate.chunks import chunk_count
    from ..evaluate.perplexity import measure
    from ..evaluate.source import open_source

    ctx = options.ctx
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


@handle_errors
@with_options(options=measure_flags)
def kld(
    model: Model,
    file: Annotated[
        Path | None,
        typer.Argument(help="The text (not needed with a .kld --base: the file holds its tokens).", show_default=False),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="The reference: a .kld file (ours or llama-perplexity's), or a model loaded beside MODEL.",
            show_default=False,
        ),
    ] = None,
    save_base: Annotated[
        Path | None,
        typer.Option(
            "--save-base",
            help="Write MODEL's log-probs over FILE to this .kld file (llama.cpp's layout) instead.",
            show_default=False,
        ),
    ] = None,
    chunks: Annotated[int, typer.Option("--chunks", min=1, help="Score at most N chunks.")] = 100,
    json_output: Json = False,
    *,
    options: SourceOptions,
) -> None:
    """KL divergence against a reference (the F16/BF16 GGUF), as llama-perplexity --kl-divergence."""
    from ..errors import UsageError

    if (base is None) == (save_base is None):
        raise UsageError(
            "qwen eval kld needs --base REF (to compare) or --save-base OUT.kld (to record a reference)",
            f"qwen eval kld MODEL-F16.gguf TEXT --save-base ref.kld, then qwen eval kld {model} --base ref.kld",
        )
    if save_base is not None:
        _save_base(model, _need_text(file), save_base, options, chunks, json_output)
    else:
        assert base is not None
        _compare(model, file, base, options, chunks, json_output)


def _need_text(file: Path | None) -> bytes:
    from ..errors import UsageError

    if file is None:
        raise UsageError("no text given", "give the text file after the model: qwen eval kld MODEL TEXT …")
    return read_text(file)


def _save_base(model: str, text: bytes, out: Path, options: SourceOptions, chunks: int, json_output: bool) -> None:
    import shutil

    from ..errors import UsageError
    from ..evaluate.chunks import chunk_count
    from ..evaluate.kld_file import KldWriter, file_size
    from ..evaluate.perplexity import measure
    from ..evaluate.source import open_source
    from ..sizes import human_size
    from ..stderr import notice

    source = open_source(model, options)
    try:
        tokens = source.tokenize(text)
        n_chunk = chunk_count(len(tokens), options.ctx, chunks)
        size = file_size(options.ctx, source.vocab_size, n_chunk)
        free = shutil.disk_usage(out.resolve().parent).free
        notice(
            f"{out}: {human_size(size)} ({n_chunk} chunks of {options.ctx} tokens, "
            f"{human_size(size / n_chunk)} each over a {source.vocab_size}-token vocabulary)"
        )
        if size > free:
            raise UsageError(f"{out} would take {human_size(size)}; {human_size(free)} is free there", "fewer --chunks")
        writer = KldWriter(out, ctx=options.ctx, n_vocab=source.vocab_size, n_chunk=n_chunk, tokens=tokens)
        progress = Progress(n_chunk, source.n_seq)
        try:
            result = measure(
                source,
                tokens,
                ctx=options.ctx,
                chunks=n_chunk,
                on_chunk=progress.on_chunk,
                on_pass=progress.on_pass,
                each=lambda chunk, _: writer.write(chunk.logits),
            )
        finally:
            writer.close()
        progress.done()
    finally:
        source.close()
    if json_output:
        sys.stdout.write(json.dumps({"model": model, "saved": str(out), "bytes": size, **vars(result)}) + "\n")
    else:
        unc = f" +/- {result.uncertainty:.5f}" if result.uncertainty is not None else ""
        sys.stdout.write(f"Final estimate: PPL = {result.ppl:.4f}{unc}\nSaved {out}\n")


def _compare(model: str, file: Path | None, base: str, options: SourceOptions, chunks: int, json_output: bool) -> None:
    import dataclasses

    from ..evaluate import kld as measure_kld
    from ..evaluate.chunks import check_batch
    from ..evaluate.kld_file import KldReader
    from ..evaluate.source import open_source

    # A .kld name is a file of log-probs (or an error saying why it is not); anything else, a model.
    reader = KldReader.open(Path(base)) if base.endswith(".kld") else None
    if reader is not None:  # the file says how long its chunks are, as in llama-perplexity
        check_batch(reader.ctx, options.batch)
        options = dataclasses.replace(options, ctx=reader.ctx)
    rows = _Rows(quiet=json_output)
    source = open_source(model, options)
    try:
        if reader is not None:
            sums = measure_kld.against_file(source, reader, chunks=chunks, on_row=rows.on_row, on_pass=rows.on_pass)
        else:
            text = _need_text(file)
            reference = open_source(base, options)
            try:
                sums = measure_kld.against_model(
                    source,
                    reference,
                    source.tokenize(text),
                    ctx=options.ctx,
                    chunks=chunks,
                    on_row=rows.on_row,
                    on_pass=rows.on_pass,
                )
            finally:
                reference.close()
    finally:
        source.close()
    if sums.count < measure_kld.MIN_TOKENS:
        from ..errors import UsageError

        raise UsageError(f"only {sums.count} tokens scored: too few for statistics", "more --chunks or a longer text")
    summary = measure_kld.summary(sums)
    if json_output:
        sys.stdout.write(json.dumps({"model": model, "base": base, **summary}) + "\n")
    else:
        sys.stdout.write("\n".join(measure_kld.report(summary)) + "\n")


class _Rows:
    """llama-perplexity's running KLD table, on stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def on_pass(self, seconds: float) -> None:
        from ..evaluate.kld import HEADER

        if not self.quiet:
            sys.stderr.write(f"{seconds:.2f} seconds per pass\n\n{HEADER}\n")

    def on_row(self, row: KldRow) -> None:
        if not self.quiet:
            sys.stderr.write(row.line() + "\n")
            sys.stderr.flush()


#: The subcommands of `qwen eval`, in the order `qwen eval --help` lists them.
COMMANDS = (ppl, kld)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="eval",
        help="Measure a model: ppl (perplexity), kld (KL divergence against a reference), mc (multiple choice), "
        "gen (generated answers graded: GSM8K, HumanEval); compare puts a result beside Qwen's table or another run.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    for command in COMMANDS:
        group.command(no_args_is_help=True)(command)
    _mc.register(group)  # `qwen eval mc`, with its own options (eval_mc.py)
    _eval_compare.register(group)  # `qwen eval compare` (eval_compare.py)
    _gen.register(group)  # `qwen eval gen` (eval_gen.py)
    app.add_typer(group)
