"""Byte counts for people: `1.5 GB`. A leaf module, so that `models/` (which must not import the
console) and `console.py` (the CLI's renderers) share one formatter."""

from __future__ import annotations


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"
