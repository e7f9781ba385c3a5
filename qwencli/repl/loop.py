"""The REPL loop: read a line, run a command or ask the model, stream the reply.

Ctrl-C while the model writes stops the reply and keeps the session; at the prompt it says how
to leave; Ctrl-D leaves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from ..chat import Chunk, collect
from ..console import AnswerWriter, error, notice, stats_line
from ..errors import QwenError
from ..session import Conversation
from . import commands
from .reader import LineReader


def run_repl(conversation: Conversation, *, history_file: Path | None, verbose: bool = False) -> None:
    reader = LineReader(history_file)
    state = commands.ReplState(conversation, say=_say)
    info = conversation.backend.info
    notice(f"{info.name} · {info.backend} · context {info.context_length} tokens. /help for commands, Ctrl-D to leave.")
    while state.running:
        try:
            _one_turn(reader, state, conversation, verbose)
        except KeyboardInterrupt:  # at the prompt, or between two steps of a turn
            notice("Use Ctrl-D or /bye to leave.")
        except EOFError:
            break


def _one_turn(reader: LineReader, state: commands.ReplState, conversation: Conversation, verbose: bool) -> None:
    line = reader.read()
    if not line.strip():
        return
    try:
        found = commands.find(line)
        if found is not None:
            command, arg = found
            stream = command.handler(state, arg)
        else:
            stream = conversation.ask(state.take_attachments(line))
        if stream is not None:
            _print_reply(stream, verbose)
    except QwenError as exc:
        error(exc.message, exc.hint)


def _print_reply(stream: Iterator[Chunk], verbose: bool) -> None:
    writer = AnswerWriter()
    chunks: list[Chunk] = []
    try:
        for chunk in stream:
            chunks.append(chunk)
            writer.write(chunk)
    except KeyboardInterrupt:
        writer.finish()
        notice("(stopped)")
        return
    finally:
        stream.close()  # type: ignore[attr-defined]
    writer.finish()
    if verbose:
        notice(stats_line(collect(chunks)))


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
