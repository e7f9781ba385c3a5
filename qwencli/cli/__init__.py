"""The `qwen` command. Nothing heavy is imported here: `qwen --help` and Tab completion must
start fast, so each command imports what it needs inside its body."""

from __future__ import annotations

import typer

from . import bench as _bench
from . import doctor as _doctor
from . import embed as _embed
from . import eval as _eval
from . import logs as _logs
from . import models as _models
from . import ps as _ps
from . import pull as _pull
from . import run as _run
from . import serve as _serve
from .errors import quiet_native_aborts

app = typer.Typer(
    name="qwen",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: Typer's Rich help imports rich.markdown (markdown-it), half of `qwen --help`'s 0.16 s.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Run Qwen models locally (GGUF via llama.cpp, or torch on CUDA) or through hosted APIs."""


_run.register(app)
_pull.register(app)
_models.register(app)
_serve.register(app)
_ps.register(app)
_doctor.register(app)
_embed.register(app)
_eval.register(app)
_logs.register(app)
_bench.register(app)


def main() -> None:
    quiet_native_aborts()
    app()
