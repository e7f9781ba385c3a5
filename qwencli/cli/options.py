"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Ctx = Annotated[
    Optional[int],
    typer.Option("--ctx", min=256, help="Context length in tokens (default: from the model and free memory).",
                 show_default=False),
]
Threads = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, help="CPU threads (default: physical cores, fewer while other programs keep the CPU busy).", show_default=False),
]
GpuLayers = Annotated[
    Optional[int],
    typer.Option("--gpu-layers", min=-1, help="Layers to offload to the GPU; -1 all (default: all when the build has Metal/CUDA).",
                 show_default=False),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Load and speed statistics, and llama.cpp's log, on stderr.")
]

REMOTE = "Remote servers and hosted Qwen"
Backend = Annotated[
    str,
    typer.Option("--backend", envvar="QWEN_BACKEND", show_envvar=False,
                 help="auto, llama, torch or remote (default: $QWEN_BACKEND or auto).", show_default=False),
]
Host = Annotated[
    Optional[str],
    typer.Option("--host", envvar="QWEN_HOST", show_envvar=False, rich_help_panel=REMOTE,
                 help="Use the model on this OpenAI-compatible server (qwen serve, vLLM, llama-server, Ollama /v1).",
                 show_default=False),
]
ApiKey = Annotated[
    Optional[str],
    typer.Option("--api-key", envvar="QWEN_API_KEY", show_envvar=False, rich_help_panel=REMOTE,
                 help="Key for --host (default: $QWEN_API_KEY). Hosted Qwen reads $DASHSCOPE_API_KEY.",
                 show_default=False),
]
BaseUrl = Annotated[
    Optional[str],
    typer.Option("--base-url", envvar="QWEN_DASHSCOPE_BASE_URL", show_envvar=False, rich_help_panel=REMOTE,
                 help="Hosted Qwen endpoint (default: the international one; mainland keys need the mainland URL).",
                 show_default=False),
]
Device = Annotated[
    Optional[str],
    typer.Option("--device", help="torch backend: cuda, cuda:N or cpu (default: cuda when it fits).",
                 show_default=False),
]

TrustRemoteCode = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="torch backend: run the Python code a model folder ships (auto_map). "
                 "Only for code you have read or trust.", rich_help_panel="Safety"),
]
AllowPickle = Annotated[
    bool,
    typer.Option("--allow-pickle", help="torch backend: load (or pull) pickle weights (*.bin) when there are no "
                 "safetensors. Loading a pickle can run code: only from sources you trust.", rich_help_panel="Safety"),
]

BACKENDS = ("auto", "llama", "torch", "remote")


def check_backend(value: str) -> str:
    from ..errors import UsageError

    name = (value or "auto").strip().lower()
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {value!r}", f"choose one of {', '.join(BACKENDS)} (--backend or QWEN_BACKEND)")
    return name
