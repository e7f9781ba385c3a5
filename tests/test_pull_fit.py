"""Will it fit: the memory estimate, `--quant auto`, and the suggestions a refusal makes."""

from __future__ import annotations

import pytest

from qwencli.models import fit, names
from qwencli.models.select import RepoFile, gguf_models

GB = 1000**3


def models(**sizes: int):
    return gguf_models([RepoFile(f"m-{quant}.gguf", size) for quant, size in sizes.items()])


def test_auto_picks_the_largest_standard_quant_that_fits():
    available = models(q8_0=8 * GB, q6_k=6 * GB, q4_k_m=4 * GB, q2_k=2 * GB, f16=1 * GB)
    assert fit.auto(names.parse("o/r"), available, available=7 * GB).quant == "q4_k_m"
    assert fit.auto(names.parse("o/r"), available, available=100 * GB).quant == "q8_0"  # f16 is not "standard"


def test_too_big_names_a_smaller_quant_of_the_same_model():
    ref = names.parse("qwen2.5-7b:q8_0")
    available = models(q8_0=8 * GB, q4_k_m=4.7 * GB)
    choice = next(m for m in available if m.quant == "q8_0")
    with pytest.raises(fit.ModelTooLarge) as caught:
        fit.check_memory(ref, choice, available, available=6 * GB)
    assert "qwen2.5-7b:q8_0 needs about 9.3 GB of memory; this machine has 6.0 GB available" == caught.value.message
    assert caught.value.hint.startswith("q4_k_m (4.7 GB) fits: qwen pull qwen2.5-7b:q4_k_m")
    assert "--force" in caught.value.hint


def test_when_no_quant_fits_a_smaller_size_of_the_family_is_named():
    ref = names.parse("qwen2.5-72b")
    available = models(q4_k_m=44 * GB, q2_k=30 * GB)
    with pytest.raises(fit.ModelTooLarge) as caught:
        fit.auto(ref, available, available=8 * GB)
    assert "no quant of qwen2.5-72b fits" in caught.value.message
    assert caught.value.hint == "qwen2.5-7b (about 4.7 GB) fits: qwen pull qwen2.5-7b"


def test_memory_estimate_covers_the_kv_cache_and_buffers():
    assert fit.memory_needed(4 * GB) > 4.4 * GB
    assert fit.memory_needed(0) == fit.OVERHEAD
