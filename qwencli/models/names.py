"""Parse what the user typed into a `ModelRef`: a catalog name, an Ollama tag, a hub repo, or a path.

    qwen2.5-7b            catalog name (default quant)
    qwen1.5-7b:q5_k_m     catalog name with a quant
    qwen:7b, qwen3:30b    Ollama tags (`qwen` is Qwen1.5), also `qwen2.5:7b-instruct-q4_K_M`
    Qwen/QwQ-32B-GGUF     any hub repo, optionally `:Q8_0`; `hf.co/…` and `huggingface.co/…` too
    ./model.gguf          a local file

Names reach the file system (the HF cache is laid out by repo id) and arrive over HTTP through the
server, so they are validated here, strictly, before anything else sees them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..errors import ModelNotFound, UsageError
from .catalog import Catalog, CatalogEntry, load

# huggingface_hub's `validate_repo_id` rules, ASCII only, without importing huggingface_hub on the
# `qwen run` start-up path (tests/test_models_names.py checks both agree).
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
_QUANT = re.compile(r"[a-z0-9][a-z0-9_]{0,23}")
_HUB_PREFIXES = ("https://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/")
#: Words in Ollama tags that only say "the instruct/chat model" (which is all the catalog holds).
_TAG_FILLER = {"instruct", "chat", "v1.5", "v2", "v2.5", "it"}
MAX_NAME = 256


@dataclass(frozen=True)
class ModelRef:
    kind: Literal["catalog", "repo", "path"]
    text: str  # as written
    repo: str | None = None
    quant: str | None = None  # lower case; None: the default
    entry: CatalogEntry | None = None  # the GGUF row (or, without one, any row of that name)
    path: Path | None = None

    @property
    def name(self) -> str:
        """Canonical name, without the quant."""
        if self.kind == "catalog" and self.entry is not None:
            return self.entry.name
        return self.repo if self.kind == "repo" and self.repo else self.text

    @property
    def display(self) -> str:
        return f"{self.name}:{self.quant}" if self.quant else self.name

    def with_quant(self, quant: str | None) -> ModelRef:
        return replace(self, quant=quant)


def looks_like_path(name: str) -> bool:
    if name.endswith(".gguf") or name.startswith(("/", "./", "../", "~")) or name in (".", ".."):
        return True
    try:
        return Path(name).exists()
    except (OSError, ValueError):
        return False


def check_text(name: str) -> str:
    """Reject what can never be a model name: empty, too long, control characters."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError("no model name given", "e.g. qwen pull qwen2.5-0.5b")
    if len(name) > MAX_NAME:
        raise UsageError(f"model name is {len(name)} characters long (at most {MAX_NAME})")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UsageError("model name contains a control character", "give a name like qwen2.5-7b or owner/repo")
    return name.strip()


def valid_repo_id(repo: str) -> bool:
    parts = repo.split("/")
    return (
        len(parts) == 2
        and all(_REPO_PART.fullmatch(p) for p in parts)
        and ".." not in repo
        and "--" not in repo
        and not repo.endswith(".git")
        and len(parts[1]) <= 96
    )


def check_quant(quant: str, name: str) -> str:
    # Qwen names its torch builds with hyphens (-GPTQ-Int4); GGUF quants never have one.
    quant = quant.strip().lower().replace("-", "_")
    if not _QUANT.fullmatch(quant):
        raise UsageError(f"{quant!r} in {name!r} is not a quantization name", "e.g. q4_k_m, Q8_0 or auto")
    return quant


def parse(name: str, catalog: Catalog | None = None) -> ModelRef:
    """Parse a model name; raise UsageError for malformed input, ModelNotFound for unknown names."""
    text = check_text(name)
    if looks_like_path(text):
        return ModelRef("path", text, path=Path(text).expanduser())
    catalog = catalog or load()
    for prefix in _HUB_PREFIXES:
        if text.lower().startswith(prefix):
            return _parse_repo(text[len(prefix) :], text, catalog)
    if "/" in text or "\\" in text:
        return _parse_repo(text, text, catalog)
    return _parse_catalog(text, catalog)


def _parse_repo(body: str, text: str, catalog: Catalog) -> ModelRef:
    repo, sep, quant = body.partition(":")
    repo = repo.rstrip("/")
    if sep and not quant:
        raise UsageError(f"{text!r} ends with ':' but names no quantization", "e.g. owner/repo:Q4_K_M, or no ':'")
    if not valid_repo_id(repo):
        raise UsageError(
            f"{text!r} is not a hub repo id",
            "a repo is owner/name (letters, digits, '-', '_', '.'), e.g. Qwen/Qwen2.5-7B-Instruct-GGUF",
        )
    entry = catalog.by_repo(repo)
    return ModelRef("repo", text, repo=repo, quant=check_quant(quant, text) if quant else None, entry=entry)


def _parse_catalog(text: str, catalog: Catalog) -> ModelRef:
    lowered = text.lower()
    base, sep, tag = lowered.rpartition(":") if ":" in lowered else (lowered, "", "")
    if sep and not base:
        raise UsageError(f"{text!r} is not a model name")
    if sep and not tag:
        raise UsageError(f"{text!r} ends with ':' but names no quantization", "e.g. qwen2.5-7b:q4_k_m, or no ':'")
    tag = tag.replace("-", "_") if _looks_like_quant(tag.replace("-", "_")) else tag
    entry_name = _catalog_name(base, catalog)
    if entry_name and (not tag or _QUANT.fullmatch(tag) and (tag == "auto" or _looks_like_quant(tag))):
        return _catalog_ref(text, entry_name, tag or None, catalog)
    if base in catalog.ollama_families:
        return _parse_ollama(text, base, tag or "latest", catalog)
    if entry_name:  # e.g. "qwq:32b" is an Ollama tag, handled above; anything else is a bad quant
        raise UsageError(f"{tag!r} in {text!r} is not a quantization name", "e.g. q4_k_m, Q8_0 or auto")
    raise _unknown(text, catalog)


def _catalog_name(base: str, catalog: Catalog) -> str | None:
    names = set(catalog.names)
    for candidate in (base, base.removesuffix("-instruct"), base.removesuffix("-chat")):
        if candidate in names:
            return candidate
    alias = catalog.by_alias(base)
    return alias.name if alias else None


def _catalog_ref(text: str, name: str, quant: str | None, catalog: Catalog) -> ModelRef:
    quant = check_quant(quant, text) if quant else None
    entry = catalog.gguf(name, quant) or catalog.rows(name)[0]
    return ModelRef("catalog", text, repo=entry.repo, quant=quant, entry=entry)


def gguf_sources(ref: ModelRef, catalog: Catalog | None = None) -> list[CatalogEntry]:
    """The GGUF repos `ref` may be pulled from or found in, the one it names first: a catalog name's
    sources in preference order; any other ref, just its own repo (an empty list for a path)."""
    if ref.kind != "catalog" or ref.entry is None or ref.entry.format != "gguf":
        return []
    sources = (catalog or load()).gguf_sources(ref.entry.name)
    return sorted(sources, key=lambda e: e.repo != ref.entry.repo)  # type: ignore[union-attr]


def _parse_ollama(text: str, family: str, tag: str, catalog: Catalog) -> ModelRef:
    parts = tag.split("-")
    for cut in range(len(parts), 0, -1):
        entry = catalog.by_alias(f"{family}:{'-'.join(parts[:cut])}")
        if entry is None:
            continue
        rest = [p for p in parts[cut:] if p not in _TAG_FILLER]
        if not rest:
            return _catalog_ref(text, entry.name, None, catalog)
        if len(rest) == 1 and _looks_like_quant(rest[0]):
            return _catalog_ref(text, entry.name, rest[0], catalog)
        if "text" in rest or "base" in rest:
            raise ModelNotFound(
                f"{text!r} is a base (pre-trained) model; the catalog holds the instruct/chat models",
                "give the hub repo of a base-model GGUF as owner/repo",
            )
        break
    raise _unknown(text, catalog)


def _looks_like_quant(word: str) -> bool:
    # GGUF quants (unsloth's dynamic ones as ud_q4_k_xl), and the torch builds' names (:awq, :gptq-int4, :fp8).
    return bool(re.fullmatch(r"(ud_)?i?q\d[a-z0-9_]*|f16|bf16|fp16|f32|fp32|auto|awq|gptq_int[48]|fp8", word))


def _unknown(text: str, catalog: Catalog) -> ModelNotFound:
    # The whole text first ("qwen3:9b" → qwen3:8b), then without a quant ("qwne2.5-7b:q8_0" → qwen2.5-7b).
    close = list(dict.fromkeys(catalog.closest(text) + catalog.closest(text.split(":")[0])))[:3]
    hint = f"did you mean {', '.join(close)}?" if close else "give a catalog name like qwen2.5-7b, or owner/repo"
    return ModelNotFound(f"unknown model {text!r}", hint + " (qwen list shows the models you have)")
