"""`qwen show`: a downloaded model's facts from its GGUF header and the cached model card; for a
catalog name not downloaded yet, what the catalog knows (sources, context, thinking, tools, size)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ModelNotFound
from ..sizes import human_size
from . import catalog

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
            try:
                found = store.matching(name)  # safetensors repos, or a clear "not downloaded"
            except ModelNotFound:
                if ref.kind == "catalog" and ref.entry is not None:
                    return _describe_catalog(ref)
                raise
            return _describe_folder(found[0], backend_choice(name, ref))
        path = local.path
    model = read_model(path)
    entry = catalog.load().by_repo(local.repo) if local and local.repo else None
    rows = [
        ("name", local.name if local else path.name),
        ("repo", local.repo if local else "-"),
        *([("source", source_text(entry))] if entry is not None else []),
        ("architecture", model.architecture),
        ("parameters", _count(model.parameter_count)),
        ("context length", str(model.context_length or "unknown")),
        ("quantization", model.quantization),
        ("license", _license(model.metadata, path)),
        ("size", human_size(model.size)),
        ("backend", backend_choice(name, ref)),
    ]
    if entry is not None:
        rows.append(("thinking", THINKING[entry.thinking]))
    rows.append(("tool calls", _tool_calls(model.chat_template)))
    projector = local.projector if local is not None else _beside(path)
    rows.append(("vision", _vision(projector)))
    rows.append(("capabilities", ", ".join(capabilities(entry, projector, model.chat_template)) or "-"))
    lines = [f"{key:<15} {value}" for key, value in rows]
    lines.append("files")
    shown_files = [*model.shards, *([projector] if projector else [])]
    lines += [f"  {p}" + (f" -> {p.resolve()}" if p.is_symlink() else "") for p in shown_files]
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


#: How the catalog's `thinking` and `tools` columns read in `qwen show`.
THINKING = {
    "none": "no",
    "switch": "yes, on by default (--no-think, or /no_think in a message, turns it off)",
    "on": "yes, on by default (--no-think turns it off)",
    "off": "yes, off by default (--think turns it on)",
    "always": "always (a Thinking model: it cannot be turned off)",
    "never": "never (an Instruct model: it cannot be turned on)",
}
TOOLS = {"none": "no", "hermes": "yes, Hermes JSON in <tool_call>", "xml": "yes, Qwen3-Coder XML in <tool_call>"}


def capabilities(
    entry: catalog.CatalogEntry | None, projector: Path | None, template: str | None = None, *, vision: bool = False
) -> list[str]:
    """What a model does besides text, as Ollama's /api/show names it: `vision` when its projector
    is here (a catalog VL model pulled with --no-vision reads text only) or `vision` says so (a
    folder's own vision tower), `tools` and `thinking` from its own template when it is read,
    else from the catalog."""
    found = ["vision"] if projector is not None or vision else []
    if template is not None:
        from ..templates import ChatTemplate

        try:
            chat = ChatTemplate(template)
            found += ["tools"] if chat.supports_tools else []
            found += ["thinking"] if chat.supports_thinking else []
        except Exception:  # a template that does not compile is reported by `run`, not here
            pass
    elif entry is not None:
        found += ["tools"] if entry.tools != "none" else []
        found += ["thinking"] if entry.thinking not in ("none", "never") else []
    return found


def _vision(projector: Path | None) -> str:
    if projector is None:
        return "no (no mmproj projector with this model)"
    from ..formats.gguf import projector_arch

    return f"yes, projector {projector.name} ({projector_arch(projector) or 'not a projector file'})"


def _beside(path: Path) -> Path | None:
    from .projector import beside

    return beside(path)


def _tool_calls(template: str | None) -> str:
    """The dialect the file's own template teaches (what the server parses), not the catalog's guess."""
    from ..templates import ChatTemplate

    if not template or "tools" not in template:
        return "no (the template takes no tools)"
    try:
        return TOOLS[ChatTemplate(template).tool_dialect]
    except Exception:  # a template that does not compile is reported by `run`, not here
        return "unknown (the template does not compile)"


def source_text(entry: catalog.CatalogEntry) -> str:
    """Whose files these are: Qwen's own, or which community publisher converted them."""
    if entry.official:
        return "Qwen's own files"
    rows = catalog.load().rows(entry.name)
    weights = next((e.repo for e in rows if e.official and e.format != catalog.GGUF), None)
    return f"a community GGUF by {entry.publisher}, not Qwen's own" + (
        f" (converted from {weights})" if weights else ""
    )


def _describe_catalog(ref) -> str:
    """A catalog name that is not downloaded: what a pull would fetch, and from where. No network."""
    from ..sampling import defaults_for

    entry = ref.entry
    sources = catalog.load().gguf_sources(entry.name)
    options = defaults_for(entry.sampling)
    sampling = ", ".join(
        f"{k} {v:g}"
        for k, v in (
            ("temperature", options.temperature),
            ("top_p", options.top_p),
            ("top_k", options.top_k),
            ("min_p", options.min_p),
            ("presence_penalty", options.presence_penalty),
            ("repeat_penalty", options.repeat_penalty),
        )
        if v is not None
    )
    rows = [
        ("name", entry.name),
        ("family", entry.family),
        ("parameters", entry.size),
        ("context length", str(entry.context or "unknown (the GGUF header says, once pulled)")),
        ("thinking", THINKING[entry.thinking]),
        ("tool calls", TOOLS[entry.tools]),
        ("vision", "yes (a pull fetches its mmproj projector too; --no-vision skips it)" if entry.vision else "no"),
        ("sampling", f"{entry.sampling} defaults: {sampling}"),
        ("downloaded", f"no (qwen pull {'' if sources else '--backend torch '}{ref.display})"),
    ]
    if entry.task != "chat":  # said before anyone tries to chat with it
        uses = {"embedding": "embeddings (qwen embed, /v1/embeddings)", "rerank": "reranking (/v1/rerank)"}
        rows.insert(2, ("for", f"{uses[entry.task]}, not chat"))
    if sources:
        chosen = catalog.load().gguf(entry.name, ref.quant) or sources[0]
        if ref.quant in (None, "auto", entry.default_quant):  # approx_bytes is the default quant's size
            rows.insert(4, ("size", f"about {human_size(chosen.approx_bytes)} at {entry.default_quant}"))
        rows.insert(1, ("source", f"{chosen.repo}: {source_text(chosen)}"))
    lines = [f"{key:<15} {value}" for key, value in rows]
    if len(sources) > 1:
        lines.append("GGUF sources, tried in this order (the first with the quant is pulled)")
        lines += [f"  {e.repo}" + ("" if e.official else " (community)") for e in sources]
    elif not sources:
        torch = [e.repo for e in catalog.load().rows(entry.name)]
        lines.append("files           safetensors only (the torch backend): " + ", ".join(torch[:3]))
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
        ("vision", "yes, its own vision tower (torch)" if local.vision else "no"),
        ("capabilities", ", ".join(capabilities(catalog.load().by_repo(local.repo), None, vision=local.vision)) or "-"),
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
