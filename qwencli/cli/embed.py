"""`qwen embed MODEL [TEXT…]`: embeddings for scripts, from the same embedding load `qwen serve`
uses (`backends/llama_embed.py`: the model's own pooling, L2-normalised vectors).

Texts come from the arguments, else one per line of stdin, each answered as soon as it is read
(so `tail -f log | qwen embed m` works) as one JSON array per line, in input order. `--json`
collects them into one object instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from .errors import handle_errors
from .options import Quant, Threads


@handle_errors
def embed(
    model: Annotated[str, typer.Argument(help="A GGUF file, a catalog name or owner/repo[:quant].")],
    texts: Annotated[
        list[str] | None, typer.Argument(help="Texts to embed (default: each line of stdin).", show_default=False)
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object: model, embeddings, prompt_tokens.")
    ] = False,
    dimensions: Annotated[
        int | None,
        typer.Option(min=1, help="Keep the first N values, normalised again (Matryoshka models).", show_default=False),
    ] = None,
    quant: Quant = None,
    threads: Threads = None,
) -> None:
    """Print embeddings: one JSON array per text."""
    from ..backends.base import LoadOptions
    from ..backends.llama_embed import LlamaEmbedBackend, shorten
    from ..errors import UsageError
    from ..models.resolve import resolve

    if not texts and sys.stdin.isatty():
        raise UsageError(
            "no text to embed", f'give texts as arguments (qwen embed {model} "some text") or pipe lines in'
        )
    resolved = resolve(model, quant=quant, backend="llama")
    if resolved.format != "gguf" or resolved.path is None:
        raise UsageError(f"qwen embed runs GGUF models on llama.cpp, and {model} is {resolved.format}")
    last = resolved.hints.get("task") == "embedding"  # as `qwen serve` loads it (server/loader.py)
    backend = LlamaEmbedBackend(resolved.path, LoadOptions(threads=threads), name=model, last_token_default=last)
    try:
        collected: list[list[float]] = []
        tokens = 0
        for number, text in enumerate(texts or _lines(), start=1):
            if not text:
                where = f"text {number}" if texts else f"line {number} of stdin"
                raise UsageError(f"{where} is empty: there is nothing to embed", "drop empty lines (grep .)")
            [vector], n = backend.embed([text])
            vector = shorten(vector, dimensions)
            tokens += n
            if json_output:
                collected.append(vector)
            else:
                sys.stdout.write(json.dumps(vector) + "\n")
                sys.stdout.flush()
        if json_output:
            sys.stdout.write(json.dumps({"model": model, "embeddings": collected, "prompt_tokens": tokens}) + "\n")
    finally:
        backend.close()


def _lines() -> Iterator[str]:
    for line in sys.stdin:
        yield line.rstrip("\r\n")


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(embed)
