"""The one Rich console on stderr, and a one-line note on it: a leaf, so every layer may write to
the user (a pull's progress bars, a remote retry) without importing the answer-writing `console`.
"""

from __future__ import annotations

import os
from functools import lru_cache


@lru_cache(maxsize=1)
def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, no_color="NO_COLOR" in os.environ, soft_wrap=True)


def notice(message: str) -> None:
    """A one-line note for the user (stderr)."""
    stderr_console().print(message, style="dim", markup=False)
