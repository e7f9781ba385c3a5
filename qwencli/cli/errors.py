"""Errors → one line on stderr and an exit status, in one place.

Exit statuses: 0 ok, 1 error, 2 usage error, 130 interrupted (Ctrl-C). Tracebacks only with
QWEN_DEBUG=1; exceptions that are not QwenError are bugs and keep theirs.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

import typer

from ..errors import EXIT_INTERRUPTED, QwenError

F = TypeVar("F", bound=Callable)


def debugging() -> bool:
    return os.environ.get("QWEN_DEBUG", "").strip() in ("1", "true", "yes")


def quiet_native_aborts() -> None:
    """ggml answers a failed assert by attaching gdb and printing every thread's backtrace: pages
    on stderr for what is one line of news to a user. QWEN_DEBUG=1 keeps it (ggml reads
    GGML_NO_BACKTRACE when it aborts; child processes such as the server's probe inherit it)."""
    if not debugging():
        os.environ.setdefault("GGML_NO_BACKTRACE", "1")


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..console import OutputClosed, error

        try:
            return fn(*args, **kwargs)
        except QwenError as exc:
            if debugging():
                traceback.print_exc()
            error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except OutputClosed:
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            interrupted()

    return wrapper  # type: ignore[return-value]


def interrupted() -> None:
    """Ctrl-C: leave at once with 130. os._exit, because a native engine thread may still be
    busy (a model half loaded) and must not be torn down under Python's finalization."""
    try:
        sys.stderr.write("\n")
        sys.stderr.flush()
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os._exit(EXIT_INTERRUPTED)
