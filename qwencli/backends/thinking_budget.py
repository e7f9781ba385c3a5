"""A reply's reasoning held to a token budget (Anthropic's `thinking.budget_tokens`), the way
llama.cpp's own `--reasoning-budget` does it: the tokens generated inside `<think>` are counted,
and once the budget is spent with the block still open, the end-of-thinking text is forced into
the reply (decoded like sampled tokens, so the model reads it) and the answer follows.

The forced text is the layout Qwen's templates give a closed block, "\\n</think>\\n\\n"; the
reply's thinking splitter sees it as any other `</think>` and the answer starts after it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..thinking import CLOSE, OPEN, Mode

FORCED_END = "\n" + CLOSE + "\n\n"
_TAIL = 16  # characters of decoded text kept to spot a tag split over tokens


class ThinkingBudget:
    def __init__(self, budget: int, mode: Mode, end_tokens: list[int], piece: Callable[[int], bytes]):
        """`mode`: where the reply starts (pipeline.reply_mode); `end_tokens`: FORCED_END tokenised
        with special tokens parsed; `piece`: a token's bytes."""
        self.left = budget
        self._open = mode == "reasoning"
        self._watching = mode != "text"  # "detect": the block may still open
        self._end = end_tokens
        self._piece = piece
        self._tail = ""
        self.forced = False

    def after(self, token: int) -> list[int]:
        """Take a generated token; the tokens to force next (the end of thinking) or []."""
        if not self._watching:
            return []
        self._tail = (self._tail + self._piece(token).decode("utf-8", errors="ignore"))[-_TAIL:]
        if not self._open:
            if OPEN in self._tail:
                self._open, self._tail = True, ""
            elif self._tail.strip():
                self._watching = False  # the reply is text: nothing to hold
            return []
        if CLOSE in self._tail:  # the model closed the block itself
            self._watching = False
            return []
        self.left -= 1
        if self.left > 0:
            return []
        self._watching = False
        self.forced = True
        return list(self._end)
