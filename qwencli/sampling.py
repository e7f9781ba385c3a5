"""Sampling defaults by model family, as Qwen recommends them (shared/reference/qwen-models.md).

Flags and request fields override these; these override llama.cpp's own defaults, which are not
what Qwen models were tuned for.
"""

from __future__ import annotations

from .chat import GenerationOptions
from .errors import UsageError

# llama.cpp's defaults, for models we know nothing about.
GENERIC = GenerationOptions(temperature=0.8, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.0)

FAMILY_DEFAULTS: dict[str, GenerationOptions] = {
    # Qwen1.5, Qwen2, Qwen2.5 and Qwen2.5-Coder share one recommendation.
    "qwen": GenerationOptions(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, repeat_penalty=1.05),
    "qwq": GenerationOptions(temperature=0.6, top_p=0.95, top_k=40, min_p=0.0, repeat_penalty=1.0),
    "qwen3": GenerationOptions(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, repeat_penalty=1.0),
    "qwen3-nothink": GenerationOptions(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, repeat_penalty=1.0),
    # Qwen3.5, 3.6 and 3.8 (the cards' "general" rows); the non-thinking set is THINK_OFF's.
    "qwen3.5": GenerationOptions(
        temperature=1.0, top_p=0.95, top_k=20, min_p=0.0, presence_penalty=1.5, repeat_penalty=1.0
    ),
    # Qwen3-Next: the Thinking model's set; the Instruct model (no thinking) uses THINK_OFF's.
    "qwen3-next": GenerationOptions(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, repeat_penalty=1.0),
    # Qwen3-Coder (30B-A3B, 480B-A35B, Coder-Next): one set, it never thinks.
    "qwen3-coder": GenerationOptions(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, repeat_penalty=1.05),
    # Qwen3-VL: the Instruct and Thinking models are separate repos, each with its card's one set.
    "qwen3-vl": GenerationOptions(
        temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, presence_penalty=1.5, repeat_penalty=1.0
    ),
    "qwen3-vl-thinking": GenerationOptions(temperature=1.0, top_p=0.95, top_k=20, min_p=0.0, repeat_penalty=1.0),
    # The embedded demo model, as its model card recommends. llama.cpp's 0.8 lets a 135M model
    # ramble for hundreds of tokens; at 0.2 with top_p 0.9 a step whose top token leads by 0.5
    # logits keeps only that token, so the demo's answers are the checked greedy ones.
    "smollm": GenerationOptions(temperature=0.2, top_p=0.9, top_k=40, min_p=0.05, repeat_penalty=1.0),
}


#: The family's set when thinking is off, for families whose cards give two.
THINK_OFF: dict[str, GenerationOptions] = {
    "qwen3": FAMILY_DEFAULTS["qwen3-nothink"],
    "qwen3.5": GenerationOptions(
        temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, presence_penalty=1.5, repeat_penalty=1.0
    ),
    "qwen3-next": GenerationOptions(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, repeat_penalty=1.0),
}

#: transformers' model_type (a torch folder's config) → the GGUF architecture it converts to.
_HF_MODEL_TYPES = {
    "qwen3_5": "qwen35",
    "qwen3_5_text": "qwen35",
    "qwen3_5_moe": "qwen35moe",
    "qwen3_5_moe_text": "qwen35moe",
    "qwen3_next": "qwen3next",
}

#: GGUF architectures of the hybrid generations (Gated DeltaNet + attention).
_QWEN35_ARCHS = ("qwen35", "qwen35moe", "qwen4exp")  # Qwen3.5, 3.6, 3.8 and 3.8-Flash-Next


def family_of(architecture: str | None, name: str | None) -> str | None:
    """The sampling family of a model from its GGUF architecture and name, or None if unknown."""
    arch = (architecture or "").lower()
    arch = _HF_MODEL_TYPES.get(arch, arch)
    label = (name or "").lower()
    if "qwq" in label:
        return "qwq"
    if arch == "llama" and "smollm" in label:
        return "smollm"
    if arch.startswith("qwen3") and "coder" in label:  # Qwen3-Coder (qwen3moe) and Coder-Next (qwen3next)
        return "qwen3-coder"
    if arch in _QWEN35_ARCHS:
        return "qwen3.5"
    if arch == "qwen3next":
        return "qwen3-next"
    if arch.startswith("qwen3"):
        return "qwen3"
    if arch.startswith("qwen2") or arch == "qwen":
        return "qwen"
    return None


def defaults_for(family: str | None, *, think: bool | None = None) -> GenerationOptions:
    """The family's set for the mode: `think` False picks the non-thinking set where there is one."""
    if think is False and family in THINK_OFF:
        return THINK_OFF[family]
    return FAMILY_DEFAULTS.get(family or "", GENERIC)


def resolve(options: GenerationOptions, family: str | None) -> GenerationOptions:
    """Fill every unset sampling field from the family's defaults."""
    return options.merged_over(defaults_for(family, think=options.think))


#: Bounds for every numeric option, shared by flags, `/set` and the server (a 400 naming the field).
LIMITS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "top_k": (0, 1000),
    "min_p": (0.0, 1.0),
    "repeat_penalty": (0.0, 10.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "max_tokens": (1, 1 << 20),
    "seed": (0, (1 << 32) - 1),
}


def check_value(name: str, value: float | int | None) -> None:
    if value is None or name not in LIMITS:
        return
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise UsageError(f"{name} must be a number", param=name)
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low:g} and {high:g}, got {value:g}", param=name)


def check_options(options: GenerationOptions) -> GenerationOptions:
    """Raise UsageError naming the first option outside its bounds."""
    for name in LIMITS:
        check_value(name, getattr(options, name))
    return options
