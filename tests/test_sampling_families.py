"""Sampling defaults by family and mode, as the model cards give them (shared/reference/qwen-2026.md)."""

from __future__ import annotations

import pytest

from qwencli import sampling
from qwencli.chat import GenerationOptions


@pytest.mark.parametrize(("arch", "name", "family"), [
    ("qwen35", "Qwen3.5-0.8B", "qwen3.5"),
    ("qwen35", "Qwen3.6-27B", "qwen3.5"),
    ("qwen35moe", "Qwen3.5-35B-A3B", "qwen3.5"),
    ("qwen35", "Qwen3.8-27B", "qwen3.5"),
    ("qwen4exp", "Qwen3.8-Flash-Next", "qwen3.5"),
    ("qwen3next", "Qwen3-Next-80B-A3B-Instruct", "qwen3-next"),
    ("qwen3next", "Qwen3-Coder-Next", "qwen3-coder"),
    ("qwen3moe", "Qwen3-Coder-30B-A3B-Instruct", "qwen3-coder"),
    ("qwen3moe", "Qwen3-30B-A3B-Instruct-2507", "qwen3"),
    ("qwen3", "Qwen3-8B", "qwen3"),
    ("qwen2", "Qwen2.5-Coder-7B-Instruct", "qwen"),  # Qwen2.5-Coder shares Qwen2.5's set
    ("qwen2", "QwQ-32B", "qwq"),
    ("llama", "SmolLM2 135M Instruct", "smollm"),
    ("llama", "Llama 3", None),
    # A torch folder's config.json model_type
    ("qwen3_5_text", "tiny-qwen35-hf", "qwen3.5"),
    ("qwen3_5_moe", "Qwen3.6-35B-A3B", "qwen3.5"),
    ("qwen3_next", "Qwen3-Next-80B-A3B-Thinking", "qwen3-next"),
    ("qwen3_moe", "Qwen3-Coder-30B-A3B-Instruct", "qwen3-coder"),
])
def test_family_of(arch, name, family):
    assert sampling.family_of(arch, name) == family


def _set(options: GenerationOptions) -> tuple:
    return (options.temperature, options.top_p, options.top_k, options.min_p, options.presence_penalty,
            options.repeat_penalty)


@pytest.mark.parametrize(("family", "think", "expected"), [
    ("qwen3.5", True, (1.0, 0.95, 20, 0.0, 1.5, 1.0)),
    ("qwen3.5", None, (1.0, 0.95, 20, 0.0, 1.5, 1.0)),
    ("qwen3.5", False, (0.7, 0.8, 20, 0.0, 1.5, 1.0)),
    ("qwen3-next", True, (0.6, 0.95, 20, 0.0, None, 1.0)),
    ("qwen3-next", False, (0.7, 0.8, 20, 0.0, None, 1.0)),
    ("qwen3-coder", None, (0.7, 0.8, 20, 0.0, None, 1.05)),
    ("qwen3-coder", False, (0.7, 0.8, 20, 0.0, None, 1.05)),
    ("qwen3", True, (0.6, 0.95, 20, 0.0, None, 1.0)),
    ("qwen3", False, (0.7, 0.8, 20, 0.0, None, 1.0)),
])
def test_defaults_per_family_and_mode(family, think, expected):
    assert _set(sampling.defaults_for(family, think=think)) == expected


def test_the_catalog_keys_exist():
    for key in ("qwen", "qwq", "qwen3", "qwen3-nothink", "smollm", "qwen3.5", "qwen3-next", "qwen3-coder"):
        assert key in sampling.FAMILY_DEFAULTS


def test_explicit_values_win_over_the_mode_switch():
    mine = GenerationOptions(temperature=0.3, think=False)
    resolved = sampling.resolve(mine, "qwen3.5")
    assert resolved.temperature == 0.3 and resolved.top_p == 0.8 and resolved.presence_penalty == 1.5
    assert sampling.resolve(mine.replace(think=True), "qwen3.5").top_p == 0.95
