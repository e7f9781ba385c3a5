"""The `qwen` command. Nothing heavy is imported here: `qwen --help` and Tab completion must
start fast, so each command imports what it needs inside its body."""

from __future__ import annotations

import os
import sys

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


def _new_app() -> typer.Typer:
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

    return app


#: Each command's module, in `qwen --help`'s order (tests/test_cli_options.py checks the names).
MODULES = (_run, _pull, _models, _serve, _ps, _doctor, _embed, _eval, _logs, _bench)
#: The module that registers each command name.
OWNER = {
    "run": _run,
    "pull": _pull,
    "list": _models,
    "ls": _models,
    "show": _models,
    "rm": _models,
    "serve": _serve,
    "ps": _ps,
    "doctor": _doctor,
    "embed": _embed,
    "eval": _eval,
    "logs": _logs,
    "bench": _bench,
}


def build(modules: tuple = MODULES) -> typer.Typer:
    app = _new_app()
    for module in modules:
        module.register(app)
    return app


app = build()


def main() -> None:
    """`qwen …`. Typer turns every command's parameters into Click objects before it dispatches
    (~45 ms for all of them, on every `qwen run`), so a command named on the command line gets an
    app holding only its own module's commands; help, Tab completion and errors get them all."""
    quiet_native_aborts()
    _run.ENDS_WITH_PROCESS = True
    owner = OWNER.get(sys.argv[1]) if len(sys.argv) > 1 else None
    completing = any(key.endswith("_COMPLETE") for key in os.environ)
    (build((owner,)) if owner is not None and not completing else app)()
