"""Paired rounds for benchmarks on a machine whose speed wanders: ABBA.

A round runs A, B, B, A (B, A, A, B in odd rounds) and keeps each side's mean, so a drift within
the round falls on both sides alike and the halves of each pair run back to back."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def abba(round_index: int, a: Callable[[], float], b: Callable[[], float]) -> tuple[float, float]:
    """(mean of a's two turns, mean of b's two turns) of one round."""
    turns = (a, b, b, a) if round_index % 2 == 0 else (b, a, a, b)
    seen: dict[Callable[[], float], list[float]] = {a: [], b: []}
    for side in turns:
        seen[side].append(side())
    return statistics.mean(seen[a]), statistics.mean(seen[b])
