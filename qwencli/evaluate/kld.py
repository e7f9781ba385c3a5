"""KL divergence of a model against a reference's log-probabilities, with the statistics
`llama-perplexity --kl-divergence` prints: PPL of both and their ratio (with the covariance of the
two), mean KLD ± its uncertainty and percentiles, Δp = p(token) − p_base(token), and how often the
two agree on the top token. The arithmetic follows perplexity.cpp's float32/double split, so the
same logits give the same digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .chunks import ChunkSource, scored
from .kld_file import KldReader, decode_header

if TYPE_CHECKING:
    import numpy as np


@dataclass
class KldSums:
    """perplexity.cpp's `kl_divergence_result`, and each token's KLD and Δp for the percentiles."""

    sum_nll: float = 0.0
    sum_nll2: float = 0.0
    sum_nll_base: float = 0.0
    sum_nll_base2: float = 0.0
    sum_nll_nll_base: float = 0.0
    sum_kld: float = 0.0
    sum_kld2: float = 0.0
    sum_p_diff: float = 0.0
    sum_p_diff2: float = 0.0
    sum_p_diff4: float = 0.0
    max_p_diff: float = 0.0
    n_same_top: int = 0
    count: int = 0
    klds: list[Any] = field(default_factory=list)
    p_diffs: list[Any] = field(default_factory=list)

    def add(self, logits: np.ndarray, targets: np.ndarray, base_rows: np.ndarray) -> None:
        """One chunk: `logits[i]` (float32) against the reference's encoded row `base_rows[i]`."""
        import numpy as np

        f32, f64 = np.float32, np.float64
        n, vocab = logits.shape
        rows = np.arange(n)
        imax = logits.argmax(axis=1)
        top = logits[rows, imax]
        log_sum_exp = np.log(np.exp(logits - top[:, None]).sum(axis=1, dtype=f64)).astype(f32)
        picked = logits[rows, targets]
        nll = top + log_sum_exp - picked
        scale, min_log_prob = decode_header(base_rows)
        q = base_rows[:, 4 : 4 + vocab]
        nll_base = -(scale * q[rows, targets].astype(f32) + min_log_prob)
        log_p = top + log_sum_exp  # max_logit += log_sum_exp
        log_p_base = scale[:, None] * q.astype(f32) + min_log_prob[:, None]
        imax_base = log_p_base.argmax(axis=1)
        terms = np.exp(log_p_base) * (log_p_base - logits + log_p[:, None])
        kld = np.where(log_p_base > f32(-16), terms, f32(0)).sum(axis=1, dtype=f64)
        p_diff = np.exp(-nll) - np.exp(-nll_base)
        p_diff2 = (p_diff * p_diff).astype(f64)

        self.sum_nll += float(nll.astype(f64).sum())
        self.sum_nll2 += float((nll * nll).astype(f64).sum())
        self.sum_nll_base += float(nll_base.astype(f64).sum())
        self.sum_nll_base2 += float((nll_base * nll_base).astype(f64).sum())
        self.sum_nll_nll_base += float((nll * nll_base).astype(f64).sum())
        self.sum_kld += float(kld.sum())
        self.sum_kld2 += float((kld * kld).sum())
        self.sum_p_diff += float(p_diff.astype(f64).sum())
        self.sum_p_diff2 += float(p_diff2.sum())
        self.sum_p_diff4 += float((p_diff2 * p_diff2).sum())
        self.max_p_diff = max(self.max_p_diff, float(np.abs(p_diff).max()))
        self.n_same_top += int((imax == imax_base).sum())
        self.count += n
        self.klds.append(kld.astype(f32))
        self.p_diffs.append(p_diff)


def mean_and_uncertainty(total: float, total2: float, count: int) -> tuple[float, float]:
    if count < 1:
        return 0.0, 0.0
    mean = total / count
    variance = total2 / count - mean * mean
    return mean, math.sqrt(variance / (count - 1)) if variance > 0 and count > 10 else 0.0


def covariance(a: float, b: float, ab: float, count: int) -> float:
    if count < 10:
        return 0.0
    return (ab / count - (a / count) * (b / count)) / (count - 1)


def percentile(values: Any, fraction: float) -> float:
    """perplexity.cpp's: linear between the two nearest of the sorted values."""
    if fraction <= 0:
        return float(values[0])
    if fraction >= 1:
        return float(values[-1])
    p = fraction * (len(values) - 1)
    ip = int(p)
    p -= ip
    return float((1 - p) * values[ip] + p * values[min(ip + 1, len(values) - 1)])


def median(values: Any) -> float:
    n = len(values)
    return float(values[n // 2]) if n % 2 else float(0.5 * (values[n // 2] + values[n // 2 - 1]))


@dataclass(frozen=True)
class KldRow:
    """The running line after a chunk, as llama-perplexity prints it."""

    chunk: int
    ppl: float
    ppl_unc: float
    log_ratio: float
    log_ratio_unc: float
    kld: float
    kld_unc: float
    rms_p_diff: float
    rms_p_diff_unc: float
    same_top: float
    same_top_unc: float

    def line(self) -> str:
        return (
            f"{self.chunk:4d}    {self.ppl:9.4f} ± {self.ppl_unc:9.4f}    {self.log_ratio:10.5f} ± "
            f"{self.log_ratio_unc:10.5f}    {self.kld:10.5f} ± {self.kld_unc:10.5f}    "
            f"{100 * self.rms_p_diff:6.3f} ± {100 * self.rms_p_diff_unc:6.3f} %    "
            f"{100 * self.same_top:6.3f} ± {100 * self.same_top_unc:6.3f} %"
        )


HEADER = (
    "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS"
    "            Same top p"
)


def running_row(sums: KldSums, chunk: int) -> KldRow:
    log_ppl, log_ppl_unc = mean_and_uncertainty(sums.sum_nll, sums.sum_nll2, sums.count)
    base, base_unc = mean_and_uncertainty(sums.sum_nll_base, sums.sum_nll_base2, sums.count)
    cov = covariance(sums.sum_nll, sums.sum_nll_base, sums.sum_nll_nll_base, sums.count)
    kld, kld_unc = mean_and_uncertainty(sums.sum_kld, sums.sum_kld2, sums.count)
    mse, mse_unc = mean_and_uncertainty(sums.sum_p_diff2, sums.sum_p_diff4, sums.count)
    rms = math.sqrt(mse)
    top = sums.n_same_top / sums.count
    return KldRow(
        chunk=chunk,
        ppl=math.exp(log_ppl),
        ppl_unc=math.exp(log_ppl) * log_ppl_unc,
        log_ratio=log_ppl - base,
        log_ratio_unc=math.sqrt(max(log_ppl_unc**2 + base_unc**2 - 2 * cov, 0.0)),
        kld=kld,
        kld_unc=kld_unc,
        rms_p_diff=rms,
        rms_p_diff_unc=0.5 / rms * mse_unc if rms > 0 else 0.0,
        same_top=top,
        same_top_unc=math.sqrt(top * (1 - top) / (sums.count - 1)) if sums.count > 1 else 0.0,
    )


KLD_PERCENTILES = (("99.9%", 0.999), ("99.0%", 0.990), ("95.0%", 0.950), ("90.0%", 0.900))
KLD_LOW = (("10.0%", 0.100), (" 5.0%", 0.050), (" 1.0%", 0.010), (" 0.1%", 0.001))
DP_HIGH = (*KLD_PERCENTILES, ("75.0%", 0.750))
DP_LOW = (("25.0%", 0.250), *KLD_LOW)


def summary(sums: KldSums) -> dict[str, Any]:
    """The final statistics, by llama-perplexity's names for them."""
    import numpy as np

    klds = np.sort(np.concatenate(sums.klds))
    p_diffs = np.sort(np.concatenate(sums.p_diffs))
    log_ppl, log_ppl_unc = mean_and_uncertainty(sums.sum_nll, sums.sum_nll2, sums.count)
    log_base, log_base_unc = mean_and_uncertainty(sums.sum_nll_base, sums.sum_nll_base2, sums.count)
    ppl, ppl_base = math.exp(log_ppl), math.exp(log_base)
    cov = covariance(sums.sum_nll, sums.sum_nll_base, sums.sum_nll_nll_base, sums.count)
    ratio_unc = math.sqrt(max(log_ppl_unc**2 + log_base_unc**2 - 2 * cov, 0.0))
    kld, kld_unc = mean_and_uncertainty(sums.sum_kld, sums.sum_kld2, sums.count)
    dp, dp_unc = mean_and_uncertainty(sums.sum_p_diff, sums.sum_p_diff2, sums.count)
    mse, mse_unc = mean_and_uncertainty(sums.sum_p_diff2, sums.sum_p_diff4, sums.count)
    rms = math.sqrt(mse)
    top = sums.n_same_top / sums.count
    correlation = cov / (log_ppl_unc * log_base_unc) if log_ppl_unc and log_base_unc else 0.0
    return {
        "tokens": sums.count,
        "ppl": [ppl, ppl * log_ppl_unc],
        "ppl_base": [ppl_base, ppl_base * log_base_unc],
        "ln_ppl_correlation": correlation,
        "ln_ppl_ratio": [log_ppl - log_base, ratio_unc],
        "ppl_ratio": [math.exp(log_ppl - log_base), math.exp(log_ppl - log_base) * ratio_unc],
        "ppl_diff": [
            ppl - ppl_base,
            math.sqrt(max((ppl * log_ppl_unc) ** 2 + (ppl_base * log_base_unc) ** 2 - 2 * ppl * ppl_base * cov, 0.0)),
        ],
        "kld": [kld, kld_unc],
        "kld_percentiles": {
            "max": float(klds[-1]),
            **{k.strip(): percentile(klds, f) for k, f in KLD_PERCENTILES},
            "median": median(klds),
            **{k.strip(): percentile(klds, f) for k, f in KLD_LOW},
            "min": float(klds[0]),
        },
        "p_diff": [dp, dp_unc],
        "p_diff_percentiles": {
            "max": float(p_diffs[-1]),
            **{k.strip(): percentile(p_diffs, f) for k, f in DP_HIGH},
            "median": median(p_diffs),
            **{k.strip(): percentile(p_diffs, f) for k, f in DP_LOW},
            "min": float(p_diffs[0]),
        },
        "rms_p_diff": [rms, 0.5 / rms * mse_unc if rms > 0 else 0.0],
        "same_top": [top, math.sqrt(top * (1 - top) / (sums.count - 1)) if sums.count > 1 else 0.0],
    }


def report(s: dict[str, Any]) -> list[str]:
    """`summary` in llama-perplexity's words and digits."""
    kp, dp = s["kld_percentiles"], s["p_diff_percentiles"]
    lines = [
        "====== Perplexity statistics ======",
        f"Mean PPL(Q)                   : {s['ppl'][0]:10.6f} ± {s['ppl'][1]:10.6f}",
        f"Mean PPL(base)                : {s['ppl_base'][0]:10.6f} ± {s['ppl_base'][1]:10.6f}",
        f"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * s['ln_ppl_correlation']:6.2f}%",
        f"Mean ln(PPL(Q)/PPL(base))     : {s['ln_ppl_ratio'][0]:10.6f} ± {s['ln_ppl_ratio'][1]:10.6f}",
        f"Mean PPL(Q)/PPL(base)         : {s['ppl_ratio'][0]:10.6f} ± {s['ppl_ratio'][1]:10.6f}",
        f"Mean PPL(Q)-PPL(base)         : {s['ppl_diff'][0]:10.6f} ± {s['ppl_diff'][1]:10.6f}",
        "",
        "====== KL divergence statistics ======",
        f"Mean    KLD: {s['kld'][0]:10.6f} ± {s['kld'][1]:10.6f}",
        f"Maximum KLD: {kp['max']:10.6f}",
        *(f"{k}   KLD: {kp[k.strip()]:10.6f}" for k, _ in KLD_PERCENTILES),
        f"Median  KLD: {kp['median']:10.6f}",
        *(f"{k}   KLD: {kp[k.strip()]:10.6f}" for k, _ in KLD_LOW),
        f"Minimum KLD: {kp['min']:10.6f}",
        "",
        "====== Token probability statistics ======",
        f"Mean    Δp: {100 * s['p_diff'][0]:6.3f} ± {100 * s['p_diff'][1]:5.3f} %",
        f"Maximum Δp: {100 * dp['max']:6.3f}%",
        *(f"{k}   Δp: {100 * dp[k.strip()]:6.3f}%" for k, _ in DP_HIGH),
        f"Median  Δp: {100 * dp['median']:6.3f}%",
        *(f"{k}   Δp: {100 * dp[k.strip()]:6.3f}%" for k, _ in DP_LOW),
        f"Minimum Δp: {100 * dp['min']:6.3f}%",
        f"RMS Δp    : {100 * s['rms_p_diff'][0]:6.3f} ± {100 * s['rms_p_diff'][1]:5.3f} %",
        f"Same top p: {100 * s['same_top'][0]:6.3f} ± {100 * s['same_top'][1]:5.3f} %",
    ]
    return lines


#: llama-perplexity prints no statistics over fewer tokens.
MIN_TOKENS = 100


def against_file(
    source: ChunkSource,
    base: KldReader,
    *,
    chunks: int | None,
    on_row: Callable[[KldRow], None] | None = None,
    on_pass: Callable[[float], None] | None = None,
) -> KldSums:
    """`source`'s KLD against the reference log-probs in `base`, over the file's own tokens."""
    from ..errors import UsageError

    if base.n_vocab != source.vocab_size:
        raise UsageError(
            f"{base.path} holds log-probs over {base.n_vocab} tokens; this model's vocabulary has {source.vocab_size}",
            "compare quants of the same model",
        )
    n_chunk = base.n_chunk if chunks is None else min(chunks, base.n_chunk)
    sums = KldSums()
    rows = base.chunks()
    for chunk in scored(source, base.tokens, base.ctx, n_chunk, on_pass):
        sums.add(chunk.logits, chunk.targets, next(rows))
        if on_row is not None:
            on_row(running_row(sums, chunk.index + 1))
    return sums


def against_model(
    source: ChunkSource,
    reference: ChunkSource,
    tokens: list[int],
    *,
    ctx: int,
    chunks: int | None,
    on_row: Callable[[KldRow], None] | None = None,
    on_pass: Callable[[float], None] | None = None,
) -> KldSums:
    """`source`'s KLD against `reference` loaded beside it, chunk by chunk: the reference's logits
    go through the `.kld` encoding in memory, so the numbers equal those of a saved file."""
    from ..errors import UsageError
    from .chunks import chunk_count
    from .kld_file import encode

    if reference.vocab_size != source.vocab_size:
        raise UsageError(
            f"the reference's vocabulary has {reference.vocab_size} tokens, this model's {source.vocab_size}",
            "compare quants of the same model",
        )
    n_chunk = chunk_count(len(tokens), ctx, chunks)
    sums = KldSums()
    pairs = zip(scored(reference, tokens, ctx, n_chunk), scored(source, tokens, ctx, n_chunk, on_pass), strict=True)
    for base, chunk in pairs:
        sums.add(chunk.logits, chunk.targets, encode(base.logits))
        if on_row is not None:
            on_row(running_row(sums, chunk.index + 1))
    return sums
