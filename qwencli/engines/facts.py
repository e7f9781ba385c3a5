"""What an engine plan needs to know of a model: its repo, dialects, context, weights and attention shape.

From the catalog (name → repo, `thinking`, `tools`, native context, approximate bytes) and, when the
model is in the store, its own `config.json` (head counts, layers). Without a download the head counts
come from `KNOWN_SHAPES`, numbers copied from Qwen's model cards; a model in neither is planned without
them (tensor parallelism then only has to divide the GPU count, and vLLM checks the rest at start).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class AttentionShape:
    heads: int  # query heads
    kv_heads: int
    head_dim: int
    attention_layers: int  # layers that keep a KV cache (Qwen3.5+: one in four; the rest are DeltaNet)


#: Shapes from the model cards ("Number of Attention Heads (GQA): Q / KV", "Number of Layers"), for a plan
#: made before any download. Qwen3.6-35B-A3B: 40 layers as 10 × (3 DeltaNet + 1 gated attention), 16 Q /
#: 2 KV heads of 256 (huggingface.co/Qwen/Qwen3.6-35B-A3B). Qwen3: 8B 32/8 × 36 layers, 32B 64/8 × 64,
#: 30B-A3B 32/4 × 48, 235B-A22B 64/4 × 94, head dim 128 (huggingface.co/Qwen/Qwen3-*). Qwen2.5-0.5B 14/2
#: × 24 of 64, 7B 28/4 × 28 of 128 (huggingface.co/Qwen/Qwen2.5-*-Instruct).
KNOWN_SHAPES: dict[str, AttentionShape] = {
    "qwen3.6-35b-a3b": AttentionShape(16, 2, 256, 10),
    "qwen3-8b": AttentionShape(32, 8, 128, 36),
    "qwen3-32b": AttentionShape(64, 8, 128, 64),
    "qwen3-30b-a3b": AttentionShape(32, 4, 128, 48),
    "qwen3-30b-a3b-instruct-2507": AttentionShape(32, 4, 128, 48),
    "qwen3-30b-a3b-thinking-2507": AttentionShape(32, 4, 128, 48),
    "qwen3-coder-30b-a3b": AttentionShape(32, 4, 128, 48),
    "qwen3-235b-a22b": AttentionShape(64, 4, 128, 94),
    "qwen3-235b-a22b-instruct-2507": AttentionShape(64, 4, 128, 94),
    "qwen3-235b-a22b-thinking-2507": AttentionShape(64, 4, 128, 94),
    "qwen2.5-0.5b": AttentionShape(14, 2, 64, 24),
    "qwen2.5-7b": AttentionShape(28, 4, 128, 28),
}


@dataclass(frozen=True)
class ModelFacts:
    name: str  # what clients call it (the served model name)
    repo: str  # owner/repo, or a local folder
    thinking: str = "unknown"  # catalog's column: none | switch | on | off | always | never; unknown outside it
    tools: str = "unknown"  # none | hermes | xml; unknown outside the catalog
    context: int = 0  # trained length; 0 unknown
    weight_bytes: int = 0  # 0 unknown
    moe: bool = False
    quantization: str | None = None  # awq | gptq | fp8 | None (bf16)
    mtp: bool = False  # trained with multi-token-prediction heads (Qwen3.5 and later)
    shape: AttentionShape | None = None
    in_store: bool = False  # the files are in the HF cache already: the engine must not download


_MOE = re.compile(r"\d+(?:\.\d+)?B-A\d+(?:\.\d+)?B", re.IGNORECASE)
_MTP_FAMILIES = ("qwen3.5", "qwen3.6", "qwen3.8")


def facts_for(name: str) -> ModelFacts:
    """Facts for a catalog name, an `owner/repo`, or a local Hugging Face folder."""
    from ..models import names, store
    from ..models.catalog import GGUF, load

    path = Path(name).expanduser()
    if path.is_dir():
        config = _config(path)
        return ModelFacts(
            name=path.name, repo=str(path.absolute()), context=_trained(config), moe=_is_moe(config),
            quantization=_quant(config), shape=_shape(config), in_store=True,
        )  # fmt: skip
    ref = names.parse(name)
    if ref.kind == "path":
        raise UsageError(f"{name}: --engine serves a Hugging Face folder or repo, not a single file")
    catalog = load()
    entry = None
    if ref.kind == "catalog" and ref.entry is not None:
        rows = [e for e in catalog.rows(ref.entry.name) if e.format != GGUF]
        wanted = {"awq": "awq", "gptq_int4": "gptq-int4", "gptq_int8": "gptq-int8", "fp8": "fp8"}.get(ref.quant or "")
        entry = next((e for e in rows if e.format == (wanted or "safetensors")), rows[0] if rows else None)
        if entry is None:
            raise UsageError(f"{ref.display} has no safetensors build for vLLM/SGLang in the catalog")
    elif ref.repo:
        entry = catalog.by_repo(ref.repo)
    repo = entry.repo if entry is not None else str(ref.repo)
    local = store.find_torch_build(repo)
    config = _config(local.path) if local is not None else {}
    catalog_name = entry.name if entry is not None else None
    return ModelFacts(
        name=catalog_name or repo,
        repo=repo,
        thinking=entry.thinking if entry else "unknown",
        tools=entry.tools if entry else "unknown",
        context=_trained(config) or (entry.context if entry else 0),
        weight_bytes=(local.size if local is not None else 0) or (entry.approx_bytes if entry else 0),
        moe=_is_moe(config) or bool(entry and _MOE.search(entry.size)),
        quantization=_quant(config) or (_catalog_quant(entry.format) if entry else None),
        mtp=bool(entry and entry.family in _MTP_FAMILIES),
        shape=_shape(config) or KNOWN_SHAPES.get(catalog_name or ""),
        in_store=local is not None,
    )


def _catalog_quant(fmt: str) -> str | None:
    return {"awq": "awq", "gptq-int4": "gptq", "gptq-int8": "gptq", "fp8": "fp8"}.get(fmt)


def _config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # Qwen3.5+ nest the language model's numbers under text_config (they are vision-language models).
    text = data.get("text_config")
    return {**data, **text} if isinstance(text, dict) else data


def _trained(config: dict[str, Any]) -> int:
    value = config.get("max_position_embeddings")
    return value if isinstance(value, int) and value > 0 else 0


def _is_moe(config: dict[str, Any]) -> bool:
    return bool(config.get("num_experts") or config.get("num_local_experts"))


def _quant(config: dict[str, Any]) -> str | None:
    method = (config.get("quantization_config") or {}).get("quant_method")
    return str(method).lower() if method else None


def _shape(config: dict[str, Any]) -> AttentionShape | None:
    heads, layers = config.get("num_attention_heads"), config.get("num_hidden_layers")
    if not isinstance(heads, int) or not isinstance(layers, int):
        return None
    kv = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or (config.get("hidden_size", 0) // heads)
    # Hybrid models: only the full-attention layers keep a KV cache.
    interval = config.get("full_attention_interval")
    attention = layers // interval if isinstance(interval, int) and interval > 0 else layers
    return AttentionShape(heads, int(kv), int(head_dim), attention)
