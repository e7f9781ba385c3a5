"""`qwen pull NAME`: download a model into the Hugging Face cache, resumably and verified."""

from __future__ import annotations

from typing import Annotated

import typer

from .errors import handle_errors
from .options import AllowPickle, Force, Quant, TrustRemoteCode


@handle_errors
def pull(
    model: Annotated[str, typer.Argument(help="A catalog name (qwen2.5-7b, qwen:7b), or owner/repo[:quant].")],
    quant: Quant = None,
    force: Force = False,
    backend: Annotated[
        str, typer.Option("--backend", help="llama (GGUF, the default) or torch (safetensors).")
    ] = "llama",
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    no_vision: Annotated[
        bool, typer.Option("--no-vision", help="Skip a vision model's projector (mmproj): text only.")
    ] = False,
) -> None:
    """Download a model (resumes an interrupted pull; verifies every file's sha256)."""
    from ..models import names
    from ..models.pull import pull as pull_model

    ref = names.parse(model)
    try:
        if backend.strip().lower() == "torch":
            from ..models.pull import merge_quant
            from ..models.pull_torch import pull_ref

            pull_ref(
                merge_quant(ref, quant), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, force=force
            )
        elif backend.strip().lower() not in ("llama", "auto"):
            from ..errors import UsageError

            raise UsageError(f"--backend takes llama or torch, not {backend!r}")
        else:
            pull_model(ref, quant=quant, force=force, vision=not no_vision)
    except KeyboardInterrupt:
        from ..console import notice

        notice(f"\npull interrupted; the bytes so far are kept: run qwen pull {model} to resume")
        raise


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(pull)
