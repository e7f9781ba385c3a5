"""The interactive chat: a line reader, a table of slash commands and the loop that joins them."""

from .loop import run_repl

__all__ = ["run_repl"]
