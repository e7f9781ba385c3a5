"""`qwen show`: a downloaded model's facts from its GGUF header and the cached model card."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ModelNotFound
from ..sizes import human_size

TEMPLATE_LINES = 8


def describe(name: str, *, full_template: bool = False) -> str:
    from ..formats.gguf import read_model
    from . import names, store

    ref = names.parse(name)
    if ref.kind == "path":
        assert ref.path is not None
        local = None
        path = ref.path
        if not path.exists():
            raise ModelNotFound(f"no such file: {name}")
    else:
        local = store.find(ref)
        if local is None:
            found = store.matching(name)  # safetensors repos, or a clear "not downloaded"
            return _describe_folder(found[0], backend_choice(name, ref))
        path = local.path
    model = read_model(path)
    rows = [
        ("name", local.name if local else path.name),
        ("repo", local.repo if local else "-"),
        ("architecture", model.architecture),
        ("parameters", _count(model.parameter_count)),
        ("context length", str(model.context_length or "unknown")),
        ("quantization", model.quantization),
        ("license", _license(model.metadata, path)),
        ("size", human_size(model.size)),
        ("backend", backend_choice(name, ref)),
    ]
    lines = [f"{key:<15} {value}" for key, value in rows]
    lines.append("files")
    lines += [f"  {p}" + (f" -> {p.resolve()}" if p.is_symlink() else "") for p in model.shards]
    template = model.chat_template
    if template is None:
        lines.append("chat template   none in the file")
    elif full_template:
        lines += ["chat template", template.rstrip("\n")]
    else:
        shown = template.splitlines()
        lines.append("chat template")
        lines += [f"  {line}" for line in shown[:TEMPLATE_LINES]]
        if len(shown) > TEMPLATE_LINES:
            lines.append(f"  … {len(shown) - TEMPLATE_LINES} more lines (--template shows all)")
    return "\n".join(lines) + "\n"


def backend_choice(name: str, ref) -> str:
    """Which backend `qwen run NAME` would use here, and why (no download, no network)."""
    from ..errors import QwenError
    from .resolve import route

    try:
        _, reason = route(name, ref, backend="auto", pull=False)
    except QwenError as exc:
        return f"none: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    return reason  # e.g. "a GGUF file: llama.cpp", "fits the RTX 4090's free memory: torch on CUDA"


def _describe_folder(local, backend: str) -> str:
    import json

    config_path = local.path / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        config = {}
    rows = [
        ("name", local.name),
        ("repo", local.repo),
        ("format", local.format),
        ("architecture", ", ".join(config.get("architectures") or []) or "unknown"),
        ("context length", str(config.get("max_position_embeddings", "unknown"))),
        ("quantization", local.quant),
        ("license", _card_license(local.path) or "unknown"),
        ("size", human_size(local.size)),
        ("backend", backend),
    ]
    lines = [f"{key:<15} {value}" for key, value in rows] + ["files"] + [f"  {p}" for p in local.files]
    return "\n".join(lines) + "\n"


def _license(metadata: dict, path: Path) -> str:
    value = metadata.get("general.license")
    if isinstance(value, str) and value:
        return value
    return _card_license(path.parent) or "unknown"


def _card_license(folder: Path) -> str | None:
    """The `license:` of a cached README.md's front matter (the hub's model card)."""
    for candidate in (folder, *folder.parents[:2]):
        card = candidate / "README.md"
        if card.is_file():
            text = card.read_text(encoding="utf-8", errors="replace")[:8192]
            front = re.match(r"---\n(.*?)\n---", text, re.S)
            if front and (m := re.search(r"^license:\s*(\S+)", front.group(1), re.M)):
                return m.group(1).strip("'\"")
            return None
    return None


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
