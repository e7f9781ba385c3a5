"""Stop strings over a stream: never emit half of a stop string, never lose the text before it."""

from __future__ import annotations

from collections.abc import Sequence


def partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag`: text to hold back,
    because the next piece may complete the tag (or stop string)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class StopFilter:
    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False
        #: The stop string that ended the text, once one has.
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Text safe to emit now. After a stop string is seen, `stopped` is set and the rest dropped."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._held + text
        hits = [(i, stop) for stop in self.stops if (i := buf.find(stop)) >= 0]
        if hits:
            at, self.matched = min(hits, key=lambda hit: hit[0])
            self.stopped = True
            self._held = ""
            return buf[:at]
        hold = max(partial_suffix(buf, stop) for stop in self.stops)
        self._held = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held
