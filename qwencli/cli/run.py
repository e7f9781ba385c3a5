"""`qwen run MODEL [PROMPT...]`: the REPL on a terminal, one answer otherwise."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .errors import handle_errors
from .options import ApiKey, BaseUrl, Force, Host, LoadFlags, Quant, load_flags, with_options

SAMPLING = "Sampling (defaults follow the model's family)"

#: Set by `cli.main()`: `qwen` was started for this one command, so the process ends with it
#: (not a test calling the command in-process, whose models must be freed).
ENDS_WITH_PROCESS = False


@handle_errors
@with_options(load=load_flags)
def run(
    model: Annotated[str, typer.Argument(help="A model name or a path to a .gguf file.")],
    prompt: Annotated[
        list[str] | None,
        typer.Argument(
            help="The prompt. Without one, stdin is read or, on a terminal, a chat starts.", show_default=False
        ),
    ] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature; 0 is greedy.", rich_help_panel=SAMPLING)
    ] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling.", rich_help_panel=SAMPLING)] = None,
    top_k: Annotated[int | None, typer.Option(help="Top-k sampling.", rich_help_panel=SAMPLING)] = None,
    min_p: Annotated[float | None, typer.Option(help="Min-p sampling.", rich_help_panel=SAMPLING)] = None,
    repeat_penalty: Annotated[float | None, typer.Option(help="Repetition penalty.", rich_help_panel=SAMPLING)] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", "-n", help="Most tokens to generate.", rich_help_panel=SAMPLING)
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed, for repeatable sampling.", rich_help_panel=SAMPLING)
    ] = None,
    think: Annotated[
        bool | None,
        typer.Option(
            "--think/--no-think",
            help="Qwen3 thinking: --think shows it (on stderr when piped), --no-think turns it off.",
            show_default=False,
        ),
    ] = None,
    reasoning_effort: Annotated[
        str | None,
        typer.Option(
            "--reasoning-effort",
            help="Qwen3.8's thinking level: none, minimal or low (off), medium or high (on).",
            show_default=False,
        ),
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help="'json': constrain the answer to JSON.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object: text, usage, timings.")] = False,
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            "-i",
            help="An image for the model to see (repeatable; '-' reads it from stdin).",
            show_default=False,
        ),
    ] = None,
    mmproj: Annotated[
        str | None,
        typer.Option(
            "--mmproj",
            help="The vision projector (mmproj-….gguf); one beside the model is found by itself.",
            show_default=False,
        ),
    ] = None,
    quant: Quant = None,
    force: Force = False,
    host: Host = None,
    api_key: ApiKey = None,
    base_url: BaseUrl = None,
    *,
    load: LoadFlags,
) -> None:
    """Chat with a model, or answer one prompt (from the arguments and/or stdin)."""
    from .. import settings as settings_module
    from ..backends import load_backend
    from ..chat import GenerationOptions
    from ..errors import UsageError
    from ..models.resolve import resolve
    from ..sampling import check_options
    from .input import read_images, read_prompt
    from .options import check_backend

    if format not in (None, "json"):
        raise UsageError(f"--format takes 'json', not {format!r}")
    from ..thinking import EFFORTS

    effort = reasoning_effort.lower() if reasoning_effort else None
    if effort is not None and effort not in EFFORTS:
        raise UsageError(f"--reasoning-effort takes one of {', '.join(EFFORTS)}, not {reasoning_effort!r}")
    interactive = not prompt and sys.stdin.isatty() and sys.stdout.isatty() and not json_output
    images = read_images(image or [], prompt)
    text = None if interactive else read_prompt(prompt, stdin="-" not in (image or []))
    options = check_options(
        GenerationOptions(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            max_tokens=max_tokens,
            seed=seed,
            think=think,
            reasoning_effort=effort,  # checked against EFFORTS above
            response_format=format,
        )
    )
    resolved = resolve(
        model,
        quant=quant,
        force=force,
        backend=check_backend(load.backend),
        host=host,
        api_key=api_key,
        base_url=base_url,
        for_chat=True,
    )
    if mmproj is not None:
        import dataclasses

        from ..models.projector import given

        resolved = dataclasses.replace(resolved, projector=given(mmproj))
    backend = _load_with_status(resolved, load.options, load_backend)
    try:
        if load.verbose:
            _describe(backend.info, resolved.reason)
        _note_thinking(backend.info, think, options.reasoning_effort)
        if interactive:
            from ..console import notice
            from ..repl import run_repl
            from ..session import Conversation

            conversation = Conversation(backend, system=system, options=options, notice=notice)
            conversation.attachments.extend(images)
            run_repl(conversation, history_file=settings_module.load().history_file, verbose=load.verbose)
        else:
            from ..oneshot import run_once

            run_once(
                backend,
                text or "",
                system=system,
                options=options,
                json_output=json_output,
                show_thinking=think is True,
                verbose=load.verbose,
                images=images,
            )
    finally:
        if interactive or not ENDS_WITH_PROCESS:
            backend.close()
        # Else the process ends now and the OS takes the model back at once: freeing its weights,
        # context and KV cache first cost ~40 ms of a 0.6 s one-shot run (what a script pays per prompt).


def _note_thinking(info, think, effort) -> None:
    """Say so when the model's template will not do what --think/--no-think/--reasoning-effort ask."""
    from ..console import notice
    from ..thinking import asked_to_think, unchangeable

    why = unchangeable(info.thinking, asked_to_think(think, effort))
    if why:
        flag = "--reasoning-effort" if think is None else ("--think" if think else "--no-think")
        notice(f"{flag} has no effect on {info.name}: {why}")


def _load_with_status(resolved, load, load_backend):
    if not sys.stderr.isatty():  # no spinner to show, so not even Rich's import (a script's start-up)
        return load_backend(resolved, load)
    from ..console import stderr_console

    console = stderr_console()
    if console.is_terminal:
        with console.status(f"Loading {resolved.name}…", spinner="dots"):
            return load_backend(resolved, load)
    return load_backend(resolved, load)


def _describe(info, reason: str) -> None:
    from ..console import notice

    notice(f"loaded {info.name} in {info.load_seconds:.2f} s · {info.backend} · context {info.context_reason}")
    if reason:
        notice(f"backend {info.backend}: {reason}")


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(run)
