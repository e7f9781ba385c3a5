"""`qwen bench`'s timings, as `llama-bench` takes them: per test a warm-up run (the whole prompt,
or one generated token), then `reps` runs from a cleared cache; tokens/s per run, their mean and
sample standard deviation (llama-bench's `avg_ts`, `stdev_ts`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class BenchEngine(Protocol):
    def clear(self) -> None: ...

    def prompt(self, n: int) -> None: ...

    def generate(self, n: int) -> None: ...


@dataclass(frozen=True)
class Speed:
    """One test's runs: `pp512` (a 512-token prompt) or `tg128` (128 generated tokens)."""

    n_prompt: int
    n_gen: int
    samples_ns: list[int] = field(default_factory=list)

    @property
    def test(self) -> str:
        return f"pp{self.n_prompt}" if self.n_prompt else f"tg{self.n_gen}"

    @property
    def samples_ts(self) -> list[float]:
        return [1e9 * (self.n_prompt + self.n_gen) / ns for ns in self.samples_ns]

    @property
    def avg_ts(self) -> float:
        ts = self.samples_ts
        return sum(ts) / len(ts)

    @property
    def stdev_ts(self) -> float:
        """llama-bench's: the sample standard deviation, 0 for one run."""
        ts = self.samples_ts
        if len(ts) <= 1:
            return 0.0
        mean, n = self.avg_ts, len(ts)
        return math.sqrt(max(sum(t * t for t in ts) / (n - 1) - mean * mean * n / (n - 1), 0.0))


def run(
    engine: BenchEngine,
    *,
    n_prompt: int,
    n_gen: int,
    reps: int,
    warmup: bool = True,
    on_run: Callable[[str, int], None] | None = None,
) -> list[Speed]:
    """The prompt test, then the generation test (each skipped when its count is 0)."""
    tests = [Speed(n_prompt, 0)] if n_prompt else []
    tests += [Speed(0, n_gen)] if n_gen else []
    for test in tests:
        if warmup:
            engine.clear()
            engine.prompt(n_prompt) if test.n_prompt else engine.generate(1)
        for rep in range(reps):
            engine.clear()
            started = time.perf_counter_ns()
            engine.prompt(n_prompt) if test.n_prompt else engine.generate(n_gen)
            test.samples_ns.append(time.perf_counter_ns() - started)
            if on_run is not None:
                on_run(test.test, rep + 1)
    return tests


def markdown(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """llama-bench's markdown table: columns padded, the `right` ones right-aligned."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = "| " + " | ".join("-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths)) + " |"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
