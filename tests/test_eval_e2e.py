"""`qwen eval ppl`, `qwen eval kld` and `qwen bench` on real llama.cpp (SmolLM2 Q4_1, and its own
weights dequantized to F32 and requantized to Q8_0 and Q4_0 by `llama_model_quantize`: the fixture
in tests/fixtures/numerics.py). The perplexity is checked against a reimplementation here from
llama-cpp-python's own logits; the text is this repository's README."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.models import MODELS, ROOT, SMOLLM2, require
from tests.processes import run_qwen

pytestmark = pytest.mark.slow

TEXT = ROOT / "README.md"
CTX, CHUNKS = 256, 3


def qwen(*args: str, timeout: float = 300):
    result = run_qwen(*args, timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()
    return result


def ppl_from_llama_cpp_python(model, text: bytes, ctx: int, chunks: int) -> tuple[float, int]:
    """llama-perplexity's definition over `Llama(logits_all=True)`'s logits, in float64 here."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True, n_threads=2,
                flash_attn=False, verbose=False)  # fmt: skip
    try:
        with_special = llm.tokenize(text, add_bos=True, special=False)  # BOS only if the vocabulary asks
        add_bos = len(with_special) == len(llm.tokenize(text, add_bos=False, special=False)) + 1
        first, nll, count = ctx // 2, 0.0, 0
        for c in range(chunks):
            chunk = with_special[c * ctx : (c + 1) * ctx]
            if add_bos:
                chunk[0] = llm.token_bos()
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[first : ctx - 1], dtype=np.float64)
            log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            picked = logits[np.arange(len(logits)), chunk[first + 1 : ctx]]
            nll += float(np.sum(log_z - picked))
            count += len(picked)
        return math.exp(nll / count), count
    finally:
        llm.close()


def test_qwen_eval_ppl_equals_a_reimplementation_over_llama_cpp_pythons_logits():
    model = require(SMOLLM2)
    text = TEXT.read_bytes().removesuffix(b"\n")
    expected, count = ppl_from_llama_cpp_python(model, text, CTX, CHUNKS)
    # One chunk a decode, flash attention off: the computation Llama() does.
    same = json.loads(qwen("eval", "ppl", model, TEXT, "-c", CTX, "--chunks", CHUNKS, "-b", CTX, "-fa", "off",
                           "-t", "2", "--json").stdout)  # fmt: skip
    assert same["scored"] == count == CHUNKS * (CTX - 1 - CTX // 2)
    assert same["ppl"] == pytest.approx(expected, rel=1e-4)
    assert same["running"][-1] == same["ppl"] and len(same["running"]) == CHUNKS
    # Several chunks a decode (the default batch of 2048) changes nothing.
    batched = json.loads(qwen("eval", "ppl", model, TEXT, "-c", CTX, "--chunks", CHUNKS, "-fa", "off", "-t", "2",
                              "--json").stdout)  # fmt: skip
    assert batched["ppl"] == pytest.approx(expected, rel=1e-4)
    # llama-perplexity's default, flash attention as llama.cpp chooses (on, on a CPU): its F16
    # rounding moves this tiny model's PPL by ~0.2 %.
    default = qwen("eval", "ppl", model, TEXT, "-c", CTX, "--chunks", CHUNKS, "-t", "2")
    line = default.stdout.decode().strip()
    assert line.startswith("Final estimate: PPL = ") and "+/-" in line
    assert float(line.split()[4]) == pytest.approx(expected, rel=1e-2)
    progress = default.stderr.decode()
    assert "seconds per pass" in progress and f"[{CHUNKS}]" in progress  # running values on stderr


def test_a_text_shorter_than_two_chunks_and_a_bad_batch_are_clear_errors(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("Only a few words here.\n")
    result = run_qwen("eval", "ppl", require(SMOLLM2), short, timeout=120)
    assert result.returncode == 2 and b"needs at least 1024" in result.stderr and b"Traceback" not in result.stderr
    bad = run_qwen("eval", "ppl", require(SMOLLM2), TEXT, "-b", "700", timeout=60)
    assert bad.returncode == 2 and b"multiple" in bad.stderr
    neither = run_qwen("eval", "kld", require(SMOLLM2), TEXT, timeout=60)
    assert neither.returncode == 2 and b"--base" in neither.stderr and b"--save-base" in neither.stderr


@pytest.fixture(scope="module")
def f32_base(smollm2_numeric_paths, tmp_path_factory):
    """SmolLM2's F32 dequantization's log-probs over the README, saved by `qwen eval kld --save-base`."""
    path = tmp_path_factory.mktemp("kld") / "f32.kld"
    saved = qwen("eval", "kld", smollm2_numeric_paths["F32"], TEXT, "--save-base", path, "-c", CTX,
                 "--chunks", CHUNKS, "-t", "2")  # fmt: skip
    assert b"MB" in saved.stderr  # the size note
    assert saved.stdout.decode().startswith("Final estimate: PPL = ")
    return path


def kld_of(model, base) -> dict:
    return json.loads(qwen("eval", "kld", model, "--base", base, "-t", "2", "--json").stdout)


@pytest.fixture(scope="module")
def q4_0(smollm2_numeric_paths) -> Path:
    """The same weights on Q4_0's grid (a requantization of the F32 dequantization)."""
    from tests.fixtures.numerics import variant

    return variant(smollm2_numeric_paths["F32"], "Q4_0", MODELS / "variants")


def test_kld_against_f32_is_small_and_positive_and_grows_with_a_coarser_requant(
    smollm2_numeric_paths, f32_base, q4_0
):
    # The F32 file is Q4_1's own values dequantized: against it, Q4_1 differs only by llama.cpp's
    # rounding of activations; Q8_0 adds a fine grid's rounding of the weights, Q4_0 a coarse one's.
    q4_1 = kld_of(smollm2_numeric_paths["Q4_1 (shipped)"], f32_base)
    q8 = kld_of(smollm2_numeric_paths["Q8_0"], f32_base)
    q4 = kld_of(q4_0, f32_base)
    assert q4_1["tokens"] == q8["tokens"] == q4["tokens"] == CHUNKS * (CTX - 1 - CTX // 2)
    for stats in (q4_1, q8, q4):
        assert 0 < stats["kld"][0] < 0.5 and stats["kld"][0] > 3 * stats["kld"][1]
        p = stats["kld_percentiles"]
        assert p["min"] <= p["1.0%"] <= p["median"] <= p["99.0%"] <= p["max"]
    assert q8["kld"][0] < q4["kld"][0] / 3
    assert q8["same_top"][0] > q4["same_top"][0] and q8["rms_p_diff"][0] < q4["rms_p_diff"][0]
    assert q4_1["kld"][0] < 0.05


def test_the_model_against_its_own_log_probs_has_kld_0_and_the_same_top_token(smollm2_numeric_paths, f32_base):
    same = kld_of(smollm2_numeric_paths["F32"], f32_base)
    assert abs(same["kld"][0]) < 1e-4  # what is left is the file's uint16 rounding
    # The top token agrees except where the file's 16-bit step (16/65535 nats) ties the top two
    # logits, and llama.cpp's argmax over the stored values takes the lower id: once in 381 here.
    assert same["same_top"][0] > 0.99
    assert same["ppl_ratio"][0] == pytest.approx(1.0, abs=1e-3)


def test_a_reference_model_loaded_beside_gives_the_numbers_its_saved_file_gives(smollm2_numeric_paths, f32_base):
    from_file = kld_of(smollm2_numeric_paths["Q8_0"], f32_base)
    beside = json.loads(qwen("eval", "kld", smollm2_numeric_paths["Q8_0"], TEXT, "--base",
                             smollm2_numeric_paths["F32"], "-c", CTX, "--chunks", CHUNKS, "-t", "2",
                             "--json").stdout)  # fmt: skip
    assert {k: v for k, v in beside.items() if k != "base"} == {k: v for k, v in from_file.items() if k != "base"}
    table = qwen("eval", "kld", smollm2_numeric_paths["Q8_0"], "--base", f32_base, "-t", "2")
    out = table.stdout.decode()
    assert "====== KL divergence statistics ======" in out and "Same top p:" in out
    assert "Same top p" in table.stderr.decode()  # the running table's header, on stderr


def test_qwen_bench_times_prompt_and_generation():
    rows = json.loads(qwen("bench", require(SMOLLM2), "-p", "64", "-n", "8", "-r", "2", "-t", "2", "--json").stdout)
    assert [(r["n_prompt"], r["n_gen"]) for r in rows] == [(64, 0), (0, 8)]
    for r in rows:
        assert len(r["samples_ns"]) == 2 and r["avg_ts"] > 0 and r["n_threads"] == 2 and r["n_batch"] == 2048
        assert r["avg_ts"] == pytest.approx(sum(r["samples_ts"]) / 2)
    assert rows[0]["model_type"].startswith("llama") and rows[0]["model_n_params"] > 100e6
    table = qwen("bench", require(SMOLLM2), "-p", "32", "-n", "4", "-r", "1", "-t", "2", "-fa", "off").stdout.decode()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| model") and "t/s" in lines[0] and len(lines) == 4
    assert "pp32" in lines[2] and "tg4" in lines[3] and " off " in lines[2]


def test_torch_reads_the_same_weights_to_the_same_perplexity_and_near_zero_kld(tiny_qwen2_gguf, tiny_qwen2_hf):
    pytest.importorskip("torch")
    # The GGUF holds the folder's F32 weights as F16: the two backends differ by that rounding only.
    args = ["-c", CTX, "--chunks", "4", "-t", "2", "--json"]
    llama = json.loads(qwen("eval", "ppl", tiny_qwen2_gguf, TEXT, *args).stdout)
    torch_side = json.loads(qwen("eval", "ppl", tiny_qwen2_hf, TEXT, *args).stdout)
    assert torch_side["tokens"] == llama["tokens"] and torch_side["scored"] == llama["scored"] == 4 * 127
    assert torch_side["ppl"] == pytest.approx(llama["ppl"], rel=1e-3)
    across = json.loads(qwen("eval", "kld", tiny_qwen2_gguf, TEXT, "--base", tiny_qwen2_hf, *args).stdout)
    assert 0 <= across["kld"][0] < 1e-3 and across["same_top"][0] > 0.95
