"""What Ollama's /api/tags, /api/show and /api/ps say about a model, read from the file itself
(the GGUF header: architecture, parameters, quantization, context, template) without loading it."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from ..resolved import ResolvedModel


def _size_label(n: int) -> str:
    """Ollama's parameter_size: "135M", "7.6B"."""
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


def _facts(resolved: ResolvedModel) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "format": resolved.format,
        "family": resolved.hints.get("family", ""),
        "size": 0,
        "task": resolved.hints.get("task") or "chat",
    }
    path = resolved.path
    if resolved.format != "gguf" or path is None:
        return facts
    from ..formats.gguf import read_model

    try:
        model = read_model(path)
    except Exception:  # a file the server would refuse to load still gets listed
        return facts
    from ..backends import task_of

    stat = path.stat()
    facts.update(
        task=task_of(resolved, model),
        family=model.architecture,
        size=model.size,
        parameters=model.parameter_count,
        quantization=model.quantization,
        context=model.context_length,
        template=model.chat_template,
        modified=stat.st_mtime,
        digest=hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest(),
    )
    return facts


def _details(facts: dict[str, Any]) -> dict[str, Any]:
    family = facts.get("family") or ""
    return {
        "parent_model": "",
        "format": facts["format"],
        "family": family,
        "families": [family] if family else None,
        "parameter_size": _size_label(facts["parameters"]) if facts.get("parameters") else "",
        "quantization_level": facts.get("quantization") or "",
    }


def _iso(timestamp: float | None) -> str:
    when = datetime.datetime.fromtimestamp(timestamp or 0, datetime.timezone.utc)
    return when.isoformat().replace("+00:00", "Z")


def model_details(name: str, resolved: ResolvedModel) -> dict[str, Any]:
    """One entry of /api/tags (and the start of one of /api/ps)."""
    facts = _facts(resolved)
    return {
        "name": name,
        "model": name,
        "modified_at": _iso(facts.get("modified")),
        "size": facts["size"],
        "digest": facts.get("digest", ""),
        "details": _details(facts),
    }


def capabilities(template: str | None) -> list[str]:
    from ..templates import ChatTemplate

    out = ["completion"]
    if template:
        chat = ChatTemplate(template)
        if chat.supports_tools:
            out.append("tools")
        if chat.supports_thinking:
            out.append("thinking")
    return out


def _vision_folder(resolved: ResolvedModel) -> bool:
    """A safetensors folder with its vision tower: the torch backend reads its images."""
    from ..formats.hf_folder import has_vision_tower

    return resolved.format == "safetensors" and resolved.path is not None and has_vision_tower(resolved.path)


def show_json(name: str, resolved: ResolvedModel) -> dict[str, Any]:
    facts = _facts(resolved)
    family = facts.get("family") or ""
    info: dict[str, Any] = {"general.architecture": family}
    if facts.get("parameters"):
        info["general.parameter_count"] = facts["parameters"]
    if facts.get("context"):
        info[f"{family}.context_length"] = facts["context"]
    template = facts.get("template")
    try:
        caps = capabilities(template)
    except Exception:  # a template that does not compile: the model still completes text
        caps = ["completion"]
    if facts["task"] != "chat":  # Ollama's word for an embedding model; a reranker says what it is
        caps = ["embedding"] if facts["task"] == "embedding" else ["rerank"]
    if resolved.projector is not None or _vision_folder(resolved):  # Ollama's name for a model that takes `images`
        caps.append("vision")
    return {
        "modelfile": f"# qwencli serves this model as {name}\nFROM {name}\n",
        "parameters": "",
        "template": template or "",
        "details": _details(facts),
        "model_info": info,
        "capabilities": caps,
        "modified_at": _iso(facts.get("modified")),
    }
