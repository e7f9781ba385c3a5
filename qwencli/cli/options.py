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
    typer.Option("--threads", min=1, help="CPU threads (default: physical cores).", show_default=False),
]
GpuLayers = Annotated[
    Optional[int],
    typer.Option("--gpu-layers", min=-1, help="Layers to offload to the GPU; -1 all (default: all when the build has Metal/CUDA).",
                 show_default=False),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Load and speed statistics, and llama.cpp's log, on stderr.")
]
