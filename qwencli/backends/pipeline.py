"""From decoded text pieces to chunks: split thinking, apply stop strings.

Shared by the local backends; it runs on the engine thread so that a stop string ends the token
loop at once and the usage in the final chunk counts what was really generated.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from ..chat import Chunk
from ..stops import StopFilter
from ..thinking import Mode, ThinkingSplitter


class TextPipeline:
    def __init__(self, thinking_mode: Mode, stops: Sequence[str] = ()):
        self._splitter = ThinkingSplitter(thinking_mode)
        self._stops = StopFilter(stops)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def feed(self, piece: str) -> Iterator[Chunk]:
        for chunk in self._splitter.feed(piece):
            yield from self._filter(chunk)

    def flush(self) -> Iterator[Chunk]:
        for chunk in self._splitter.flush():
            yield from self._filter(chunk)
        rest = self._stops.flush()
        if rest:
            yield Chunk(rest)

    def _filter(self, chunk: Chunk) -> Iterator[Chunk]:
        if chunk.kind == "reasoning":
            if not self._stops.stopped:
                yield chunk
            return
        text = self._stops.feed(chunk.text)
        if text:
            yield Chunk(text)
