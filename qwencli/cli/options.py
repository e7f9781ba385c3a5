"""Options shared by several commands, declared once.

An option used by one command is declared in that command's signature. One used by several is an
`Annotated` alias here; a set of options that several commands turn into one value (the load
flags of `run` and `serve`) is a group: a function whose parameters are the options and whose
result the commands receive, spliced into each command's signature by `with_options`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from ..backends.base import LoadOptions

F = TypeVar("F", bound=Callable[..., Any])

Ctx = Annotated[
    int | None,
    typer.Option(
        "--ctx", min=256, help="Context length in tokens (default: from the model and free memory).", show_default=False
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads (default: physical cores, fewer while other programs keep the CPU busy).",
        show_default=False,
    ),
]
#: `qwen eval` and `qwen bench` also take llama.cpp's tools' `-t`.
ToolThreads = Annotated[
    int | None,
    typer.Option("--threads", "-t", min=1, help="CPU threads (default: physical cores).", show_default=False),
]
GpuLayers = Annotated[
    int | None,
    typer.Option(
        "--gpu-layers",
        min=-1,
        help="Layers to offload to the GPU; -1 all (default: all when the build has Metal/CUDA).",
        show_default=False,
    ),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Load and speed statistics, and llama.cpp's log, on stderr.")
]

REMOTE = "Remote servers and hosted Qwen"
Backend = Annotated[
    str,
    typer.Option(
        "--backend",
        envvar="QWEN_BACKEND",
        show_envvar=False,
        help="auto, llama, torch or remote (default: $QWEN_BACKEND or auto).",
        show_default=False,
    ),
]


def _remote(flag: str, envvar: str, help: str) -> Any:
    """An option of the remote panel, defaulting to `envvar` (the help names it, so Typer's own is off)."""
    return typer.Option(flag, envvar=envvar, show_envvar=False, rich_help_panel=REMOTE, help=help, show_default=False)


Host = Annotated[
    str | None,
    _remote(
        "--host",
        "QWEN_HOST",
        "Use the model on this OpenAI-compatible server (qwen serve, vLLM, llama-server, Ollama /v1).",
    ),
]
ApiKey = Annotated[
    str | None,
    _remote(
        "--api-key", "QWEN_API_KEY", "Key for --host (default: $QWEN_API_KEY). Hosted Qwen reads $DASHSCOPE_API_KEY."
    ),
]
BaseUrl = Annotated[
    str | None,
    _remote(
        "--base-url",
        "QWEN_DASHSCOPE_BASE_URL",
        "Hosted Qwen endpoint (default: the international one; mainland keys need the mainland URL).",
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        "--device", help="torch backend: cuda, cuda:N or cpu (default: cuda when it fits).", show_default=False
    ),
]

TrustRemoteCode = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="torch backend: run the Python code a model folder ships (auto_map). "
        "Only for code you have read or trust.",
        rich_help_panel="Safety",
    ),
]
AllowPickle = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="torch backend: load (or pull) pickle weights (*.bin) when there are no "
        "safetensors. Loading a pickle can run code: only from sources you trust.",
        rich_help_panel="Safety",
    ),
]

Quant = Annotated[
    str | None,
    typer.Option(
        "--quant",
        "-q",
        help="Quantization, e.g. q4_k_m or Q8_0; 'auto': the largest that fits in memory.",
        show_default=False,
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Pull even when the model looks too big for this machine's memory.")
]

BACKENDS = ("auto", "llama", "torch", "remote")


def check_backend(value: str) -> str:
    from ..errors import UsageError

    name = (value or "auto").strip().lower()
    if name not in BACKENDS:
        raise UsageError(
            f"unknown backend {value!r}", f"choose one of {', '.join(BACKENDS)} (--backend or QWEN_BACKEND)"
        )
    return name


@dataclass(frozen=True)
class LoadFlags:
    """What the load flags say: the backend asked for and how to load. The backend is checked
    (`check_backend`) by the command where it uses it, so a usage error comes where it always did."""

    backend: str
    options: LoadOptions

    @property
    def verbose(self) -> bool:
        return self.options.verbose


ImageMinTokens = Annotated[
    int | None,
    typer.Option(
        "--image-min-tokens",
        min=1,
        help="Fewest tokens one image may cost (default: the projector's, 8 for Qwen-VL; torch: the folder's"
        " preprocessor_config.json, 64 for Qwen3-VL).",
        show_default=False,
    ),
]
ImageMaxTokens = Annotated[
    int | None,
    typer.Option(
        "--image-max-tokens",
        min=1,
        help="Most tokens one image may cost; larger images are shrunk (default: the projector's, 4096 for Qwen-VL;"
        " torch: the folder's preprocessor_config.json, 16384 for Qwen3-VL).",
        show_default=False,
    ),
]


def load_flags(
    ctx: Ctx = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    backend: Backend = "auto",
    device: Device = None,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    verbose: Verbose = False,
    image_min_tokens: ImageMinTokens = None,
    image_max_tokens: ImageMaxTokens = None,
) -> LoadFlags:
    """The flags that say how to load a model (`run` and `serve`)."""
    from ..backends.base import LoadOptions

    if image_min_tokens and image_max_tokens and image_min_tokens > image_max_tokens:
        from ..errors import UsageError

        raise UsageError(f"--image-min-tokens {image_min_tokens} is more than --image-max-tokens {image_max_tokens}")

    return LoadFlags(
        backend,
        LoadOptions(
            context_length=ctx,
            threads=threads,
            gpu_layers=gpu_layers,
            verbose=verbose,
            device=device,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            image_min_tokens=image_min_tokens,
            image_max_tokens=image_max_tokens,
        ),
    )


def with_options(**groups: Callable[..., Any]) -> Callable[[F], F]:
    """`@with_options(load=load_flags)`: the command's parameter `load` is replaced, where it stands
    in the signature, by `load_flags`'s parameters, and receives what `load_flags` returns for them.
    Typer reads the resulting signature as it reads any command's."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        expanded: list[inspect.Parameter] = []
        members: dict[str, list[str]] = {}
        for param in signature.parameters.values():
            group = groups.get(param.name)
            if group is None:
                expanded.append(param)
                continue
            group_params = list(inspect.signature(group, eval_str=True).parameters.values())
            members[param.name] = [p.name for p in group_params]
            expanded += [p.replace(kind=param.kind) for p in group_params]
        if missing := set(groups) - set(members):
            raise TypeError(f"{command.__name__} has no parameter {', '.join(sorted(missing))}")
        names = [p.name for p in expanded]
        if len(names) != len(set(names)):
            raise TypeError(f"{command.__name__}: an option group repeats one of the command's parameters")

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            for name, group_names in members.items():
                kwargs[name] = groups[name](**{n: kwargs.pop(n) for n in group_names})
            return command(**kwargs)

        wrapper.__signature__ = signature.replace(parameters=expanded)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in expanded}
        return wrapper  # type: ignore[return-value]

    return decorate


# `qwen eval gen` and `mc`: which questions, and where finished ones go (evaluate/journal.py).
Limit = Annotated[int | None, typer.Option(min=1, help="Only the first N questions.", show_default=False)]
JournalFile = Annotated[
    Path | None,
    typer.Option("--journal", help="Where finished questions go (default: a per-run file).", show_default=False),
]
