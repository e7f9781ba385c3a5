"""Reading the user's lines: prompt_toolkit line editing, persistent history, `\"\"\"` blocks.

Bracketed paste works as prompt_toolkit gives it: a pasted block lands in the buffer whole,
newlines included, and is sent with Enter.
"""

from __future__ import annotations

from pathlib import Path

FENCE = '"""'


class LineReader:
    def __init__(self, history_file: Path | None):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory

        history: History = InMemoryHistory()
        if history_file is not None:
            try:
                history_file.parent.mkdir(parents=True, exist_ok=True)
                history_file.touch(exist_ok=True)
                history = FileHistory(str(history_file))
            except OSError:
                pass  # a read-only home still gets a working REPL
        self._session: PromptSession[str] = PromptSession(history=history)

    def read(self) -> str:
        """One message. Raises EOFError on Ctrl-D and KeyboardInterrupt on Ctrl-C."""
        line = self._session.prompt(">>> ")
        if not line.lstrip().startswith(FENCE):
            return line
        body = line.lstrip()[len(FENCE) :]
        if body.rstrip().endswith(FENCE):
            return body.rstrip()[: -len(FENCE)]
        lines = [body] if body else []
        while True:
            more = self._session.prompt("... ")
            if more.rstrip().endswith(FENCE):
                lines.append(more.rstrip()[: -len(FENCE)])
                return "\n".join(lines).rstrip("\n") if lines else ""
            lines.append(more)
