"""The one-shot prompt: stdin first, then the argument; bad bytes replaced with one warning."""

from __future__ import annotations

import io

import pytest

from qwencli.cli import input as cli_input
from qwencli.errors import UsageError


class FakeStdin:
    def __init__(self, data: bytes, tty: bool = False):
        self.buffer = io.BytesIO(data)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_stdin_comes_before_the_argument(monkeypatch):
    monkeypatch.setattr("sys.stdin", FakeStdin(b"file contents\n"))
    assert cli_input.read_prompt(["Summarize", "this"]) == "file contents\n\nSummarize this"


def test_terminal_stdin_is_not_read(monkeypatch):
    monkeypatch.setattr("sys.stdin", FakeStdin(b"never read", tty=True))
    assert cli_input.read_prompt(["hi"]) == "hi"


def test_empty_input_is_a_usage_error(monkeypatch):
    monkeypatch.setattr("sys.stdin", FakeStdin(b"  \n"))
    with pytest.raises(UsageError, match="no prompt"):
        cli_input.read_prompt(None)


def test_invalid_utf8_is_replaced(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", FakeStdin(b"caf\xe9"))
    assert cli_input.read_prompt(None) == "caf\ufffd"
