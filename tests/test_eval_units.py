"""`qwen eval`'s arithmetic against numbers computed here, through a scripted chunk source (the
seam where a backend gives logits): uniform logits give PPL = V, 255 tokens scored per 512-token
chunk, llama.cpp's `.kld` encoding read back, KLD of a distribution against itself, llama-bench's
standard deviation."""

from __future__ import annotations

import math
import statistics
import struct
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from qwencli.errors import UsageError
from qwencli.evaluate import kld, kld_file, perplexity, speed
from qwencli.evaluate.chunks import chunk_count, check_batch, scored_per_chunk


class ScriptedSource:
    """Logits from a function of (chunk, position); records what each decode was given."""

    def __init__(self, vocab: int, logits_at, n_seq: int = 1):
        self.vocab_size, self.n_seq, self._logits_at = vocab, n_seq, logits_at
        self.decodes: list[list[list[int]]] = []

    def tokenize(self, text: bytes) -> list[int]:
        return list(text)

    def chunk_logits(self, chunks: Sequence[Sequence[int]], first: int) -> Iterator[np.ndarray]:
        self.decodes.append([list(c) for c in chunks])
        for chunk in chunks:
            yield np.stack([self._logits_at(chunk, pos) for pos in range(first, len(chunk))]).astype(np.float32)

    def close(self) -> None:
        pass


def tokens(n: int, vocab: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def test_uniform_logits_give_a_perplexity_of_exactly_the_vocabulary_size():
    vocab = 1000
    source = ScriptedSource(vocab, lambda chunk, pos: np.full(vocab, 3.25))
    result = perplexity.measure(source, tokens(3 * 512 + 100, vocab), ctx=512, chunks=None)
    assert result.ppl == pytest.approx(vocab, rel=1e-12)
    assert result.uncertainty is None  # every token alike: no variance, as llama.cpp reports
    assert result.chunks == 3 and result.scored == 3 * 255  # the 100-token tail is dropped


def test_255_tokens_scored_per_512_token_chunk_and_each_chunk_decoded_whole():
    assert scored_per_chunk(512) == 255 and scored_per_chunk(256) == 127
    seen: list[tuple[int, int]] = []
    vocab = 50

    def logits_at(chunk, pos):
        seen.append((chunk[0], pos))
        return np.zeros(vocab)

    stream = tokens(5 * 512, vocab)
    source = ScriptedSource(vocab, logits_at, n_seq=2)
    result = perplexity.measure(source, stream, ctx=512, chunks=None)
    assert result.scored == 5 * 255
    assert [len(d) for d in source.decodes] == [2, 2, 1]  # n_seq chunks per decode, the rest alone
    assert source.decodes[1][0] == stream[1024:1536]
    assert sorted({pos for _, pos in seen}) == list(range(256, 512))


def test_the_nll_of_each_token_is_minus_its_log_softmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (7, 40)).astype(np.float32)
    targets = rng.integers(0, 40, 7)
    expected = [
        -(float(row[t]) - math.log(sum(math.exp(float(x)) for x in row))) for row, t in zip(logits, targets, strict=True)
    ]
    assert perplexity.token_nll(logits, targets) == pytest.approx(expected, rel=1e-5)


def test_too_short_a_text_and_a_batch_that_splits_chunks_are_usage_errors():
    with pytest.raises(UsageError, match="needs at least 1024"):
        chunk_count(1000, 512, None)
    assert chunk_count(5000, 512, 3) == 3 and chunk_count(5000, 512, 100) == 9
    check_batch(512, 256)
    check_batch(512, 2048)
    with pytest.raises(UsageError, match="multiple"):
        check_batch(512, 700)


def test_the_kld_encoding_reads_back_as_the_log_softmax_within_its_step():
    rng = np.random.default_rng(2)
    vocab = 301  # odd: the row is padded to an even count
    logits = rng.normal(0, 4, (5, vocab)).astype(np.float32)
    rows = kld_file.encode(logits)
    assert rows.shape == (5, 2 * 151 + 4) and rows.dtype == np.uint16
    assert not rows[:, 4 + vocab :].any()
    scale, min_log_prob = kld_file.decode_header(rows)
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    back = scale[:, None] * rows[:, 4 : 4 + vocab] + min_log_prob[:, None]
    kept = log_p > log_p.max(1, keepdims=True) - 16
    assert np.all(np.abs(back - log_p)[kept] <= scale.max() * 0.51 + 1e-5)
    assert np.all(rows[:, 4 : 4 + vocab][~kept] == 0)


def test_a_kld_file_reads_back_its_header_tokens_and_rows(tmp_path):
    vocab, ctx = 64, 32
    stream = tokens(3 * ctx, vocab)
    rng = np.random.default_rng(3)
    chunk_rows = [rng.normal(0, 2, (scored_per_chunk(ctx), vocab)).astype(np.float32) for _ in range(3)]
    path = tmp_path / "base.kld"
    writer = kld_file.KldWriter(path, ctx=ctx, n_vocab=vocab, n_chunk=3, tokens=stream + [1, 2, 3])
    for rows in chunk_rows:
        writer.write(rows)
    writer.close()
    data = path.read_bytes()
    assert data[:8] == b"_logits_" and struct.unpack("<iii", data[8:20]) == (ctx, vocab, 3)
    assert path.stat().st_size == kld_file.file_size(ctx, vocab, 3)
    reader = kld_file.KldReader.open(path)
    assert (reader.ctx, reader.n_vocab, reader.n_chunk, reader.tokens) == (ctx, vocab, 3, stream)
    for read, rows in zip(reader.chunks(), chunk_rows, strict=True):
        assert np.array_equal(read, kld_file.encode(rows))


def test_a_file_that_is_not_a_kld_or_is_cut_short_is_a_clear_error(tmp_path):
    other = tmp_path / "x.kld"
    other.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(UsageError, match="not a .kld file"):
        kld_file.KldReader.open(other)
    short = tmp_path / "short.kld"
    short.write_bytes(b"_logits_" + struct.pack("<iii", 512, 1000, 4) + bytes(100))
    with pytest.raises(UsageError, match="cut short"):
        kld_file.KldReader.open(short)


def test_a_distribution_against_itself_has_kld_0_and_the_same_top_token():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (200, 500)).astype(np.float32)  # all within the 16 nats the file keeps
    targets = rng.integers(0, 500, 200)
    sums = kld.KldSums()
    sums.add(logits, targets, kld_file.encode(logits))
    summary = kld.summary(sums)
    assert abs(summary["kld"][0]) < 1e-5  # only the uint16 rounding of the reference is left
    assert summary["same_top"][0] == 1.0
    assert summary["ppl_ratio"][0] == pytest.approx(1.0, abs=1e-4)
    # a different distribution: KLD positive, near its analytic value
    other = logits + rng.normal(0, 0.5, logits.shape).astype(np.float32)
    sums = kld.KldSums()
    sums.add(other, targets, kld_file.encode(logits))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(other - other.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    exact = float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))
    assert kld.summary(sums)["kld"][0] == pytest.approx(exact, rel=1e-2) and exact > 0.05


def test_the_report_has_llama_perplexitys_lines():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, (300, 100)).astype(np.float32)
    sums = kld.KldSums()
    sums.add(logits + 0.1 * rng.normal(size=logits.shape).astype(np.float32), rng.integers(0, 100, 300),
             kld_file.encode(logits))  # fmt: skip
    lines = kld.report(kld.summary(sums))
    for start in ("Mean PPL(Q)                   :", "Mean    KLD:", "99.9%   KLD:", "Median  KLD:", " 0.1%   KLD:",
                  "Mean    Δp:", "75.0%   Δp:", "RMS Δp    :", "Same top p:"):  # fmt: skip
        assert any(line.startswith(start) for line in lines), start
    assert kld.percentile(np.array([1.0, 2.0, 3.0, 4.0]), 0.5) == 2.5 and kld.median(np.array([1, 3, 9])) == 3


def test_bench_speeds_are_tokens_per_second_with_the_sample_stdev():
    result = speed.Speed(512, 0, [1_000_000_000, 2_000_000_000, 500_000_000])
    assert result.test == "pp512" and result.samples_ts == [512.0, 256.0, 1024.0]
    assert result.avg_ts == pytest.approx(statistics.mean([512, 256, 1024]))
    assert result.stdev_ts == pytest.approx(statistics.stdev([512, 256, 1024]))
    assert speed.Speed(0, 128, [10**9]).stdev_ts == 0.0 and speed.Speed(0, 128).test == "tg128"


def test_bench_runs_warm_up_then_clears_the_cache_before_every_timed_run():
    calls: list[str] = []

    class Engine:
        def clear(self):
            calls.append("clear")

        def prompt(self, n):
            calls.append(f"p{n}")

        def generate(self, n):
            calls.append(f"g{n}")

    results = speed.run(Engine(), n_prompt=64, n_gen=8, reps=2)
    assert [r.test for r in results] == ["pp64", "tg8"] and all(len(r.samples_ns) == 2 for r in results)
    assert calls == ["clear", "p64", "clear", "p64", "clear", "p64", "clear", "g1", "clear", "g8", "clear", "g8"]
