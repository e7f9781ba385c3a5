"""The catalog: Qwen model names → hub repos and defaults, shipped as data (`qwencli/data/catalog.tsv`).

The catalog is a hint; at pull time the repo's file listing decides which files exist. One name has
a row per format (gguf, safetensors, awq, gptq-int4, gptq-int8, fp8): llama.cpp pulls a GGUF row,
the torch backend the others, picked by `format` (`torch_entry`, `torch_repo`).

Qwen publishes no GGUF for Qwen3.5 and later, so those names have several GGUF rows, one per
community publisher. `gguf_sources` orders them by `SOURCE_PREFERENCE`; a pull takes the first whose
repo exists and has the quant asked for (`pull.pull`), so a publisher that drops a repo or a quant
costs one extra listing, not a failed pull.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Protocol

from ..errors import ModelNotFound

GGUF = "gguf"
#: Formats the torch backend loads (safetensors weights, possibly quantized).
TORCH_FORMATS = ("safetensors", "awq", "gptq-int4", "gptq-int8", "fp8")
#: `--quant` values that pick a torch build of a catalog name, and the catalog format they name.
TORCH_QUANTS = {"bf16": "safetensors", "awq": "awq", "gptq_int4": "gptq-int4", "gptq_int8": "gptq-int8", "fp8": "fp8"}
#: Who publishes the GGUF a name pulls, most trusted first. Qwen's own files first. Then ggml-org,
#: llama.cpp's own organisation: converted by the same converter as the engine we ship and used by
#: its CI, but usually Q8_0 only. Then unsloth (every quant, UD dynamic quants, fixed templates),
#: bartowski (imatrix quants of everything) and lmstudio-community (LM Studio's picks).
SOURCE_PREFERENCE = ("Qwen", "ggml-org", "unsloth", "bartowski", "lmstudio-community")
#: What a model is for. Embedding and rerank models load in llama.cpp's embedding context
#: (`qwen embed`, /v1/embeddings, /v1/rerank), never for chat.
CHAT, EMBEDDING, RERANK = "chat", "embedding", "rerank"
TASKS = (CHAT, EMBEDDING, RERANK)
#: Columns a row may leave off at its end (added after the first rows were written), and their value then.
OPTIONAL_COLUMNS = {"task": CHAT}


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # e.g. "qwen2.5-7b"
    family: str  # e.g. "qwen2.5"
    size: str  # as Qwen writes it, e.g. "7B", "30B-A3B"
    format: str  # gguf | safetensors | awq | gptq-int4 | gptq-int8 | fp8
    repo: str
    default_quant: str
    quants: tuple[str, ...]  # what the reference saw in the repo (a hint)
    context: int  # native context length; 0 when unknown
    sampling: str  # key of qwencli.sampling.FAMILY_DEFAULTS
    approx_bytes: int  # size of default_quant, for fit checks and suggestions
    verified: str  # yes | partial | guess (see the file's header)
    thinking: str  # none | switch | on | off | always | never
    tools: str  # none | hermes | xml: the dialect its template asks for (the template decides at run time)
    aliases: tuple[str, ...]  # Ollama tags naming the same model
    task: str = CHAT  # chat | embedding | rerank: what the model is for (`TASKS`)

    @property
    def hints(self) -> dict:
        """Facts handed to the backend through ResolvedModel.hints."""
        return {
            "family": self.family,
            "sampling": self.sampling,
            "context": self.context or None,
            "catalog": self.name,
            "thinking": self.thinking,
            "task": self.task,
        }

    @property
    def publisher(self) -> str:
        return self.repo.split("/", 1)[0]

    @property
    def official(self) -> bool:
        """Published by Qwen itself (not a community conversion)."""
        return self.publisher == "Qwen"

    def has_quant(self, quant: str) -> bool:
        return quant in self.quants


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]

    def rows(self, name: str) -> list[CatalogEntry]:
        return [e for e in self.entries if e.name == name]

    def gguf(self, name: str, quant: str | None = None) -> CatalogEntry | None:
        """The GGUF source a pull of `name` tries first: the most preferred one that (the catalog
        believes) has `quant`, or the name's default quant; else the most preferred one."""
        sources = self.gguf_sources(name)
        wanted = quant if quant and quant != "auto" else (sources[0].default_quant if sources else None)
        return next((e for e in sources if wanted and e.has_quant(wanted)), sources[0] if sources else None)

    def gguf_sources(self, name: str) -> list[CatalogEntry]:
        """Every GGUF row of `name`, in `SOURCE_PREFERENCE` order (unknown publishers last)."""
        rows = [e for e in self.rows(name) if e.format == GGUF]
        rank = {owner.lower(): i for i, owner in enumerate(SOURCE_PREFERENCE)}
        return sorted(rows, key=lambda e: rank.get(e.publisher.lower(), len(rank)))

    def by_alias(self, alias: str) -> CatalogEntry | None:
        return next((e for e in self.entries if alias in e.aliases), None)

    def by_repo(self, repo: str) -> CatalogEntry | None:
        repo = repo.lower()
        return next((e for e in self.entries if e.repo.lower() == repo), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.name for e in self.entries))

    @property
    def ollama_families(self) -> frozenset[str]:
        return frozenset(a.split(":")[0] for e in self.entries for a in e.aliases)

    def closest(self, text: str, n: int = 3) -> list[str]:
        """The known names (catalog names and Ollama tags) nearest to `text`."""
        words = [*self.names, *(a for e in self.entries for a in e.aliases)]
        return difflib.get_close_matches(text.lower(), words, n=n, cutoff=0.6)

    def same_family(self, entry: CatalogEntry) -> list[CatalogEntry]:
        """GGUF entries of the same family, smallest first (for "a smaller size fits" hints)."""
        rows = [
            e
            for e in self.entries
            if e.family == entry.family and e.task == entry.task and e.format == GGUF and e.approx_bytes
        ]
        return sorted(rows, key=lambda e: e.approx_bytes)


class Ref(Protocol):
    """What the catalog reads of a `names.ModelRef` (names imports the catalog, not the reverse)."""

    @property
    def kind(self) -> str: ...
    @property
    def repo(self) -> str | None: ...
    @property
    def quant(self) -> str | None: ...
    @property
    def entry(self) -> CatalogEntry | None: ...
    @property
    def display(self) -> str: ...


def torch_entry(ref: Ref, catalog: Catalog | None = None) -> CatalogEntry | None:
    """The catalog's torch row for `ref` (bf16 safetensors unless a torch quant is named)."""
    catalog = catalog or load()
    if ref.kind == "repo" and ref.repo:
        entry = catalog.by_repo(ref.repo)
        return entry if entry is not None and entry.format != GGUF else None
    if ref.kind != "catalog" or ref.entry is None:
        return None
    wanted = TORCH_QUANTS.get(ref.quant or "bf16", "safetensors")
    return next((e for e in catalog.rows(ref.entry.name) if e.format == wanted), None)


def torch_repo(ref: Ref) -> str:
    """The repo `qwen pull --backend torch` downloads for `ref`."""
    entry = torch_entry(ref)
    if entry is not None:
        return entry.repo
    if ref.kind == "repo" and ref.repo:
        return ref.repo
    raise ModelNotFound(f"{ref.display} has no safetensors build in the catalog", f"qwen pull {ref.display}")


def parse_catalog(text: str) -> Catalog:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    header = lines[0].split("\t")
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        required = len(header) - sum(1 for column in header if column in OPTIONAL_COLUMNS)
        if not required <= len(cells) <= len(header):
            raise ValueError(f"catalog line {number}: {len(cells)} cells, expected {len(header)}")
        row = {**OPTIONAL_COLUMNS, **dict(zip(header, cells))}
        if row["task"] not in TASKS:
            raise ValueError(f"catalog line {number}: task {row['task']!r} is not one of {', '.join(TASKS)}")
        entries.append(
            CatalogEntry(
                name=row["name"],
                family=row["family"],
                size=row["size"],
                format=row["format"],
                repo=row["repo"],
                default_quant=row["default_quant"],
                quants=tuple(q for q in row["quants"].split(",") if q),
                context=int(row["context"] or 0),
                sampling=row["sampling"],
                approx_bytes=int(row["approx_bytes"] or 0),
                verified=row["verified"],
                thinking=row["thinking"],
                tools=row["tools"],
                aliases=tuple(a for a in row["aliases"].split(",") if a),
                task=row["task"],
            )
        )
    return Catalog(tuple(entries))


@lru_cache(maxsize=1)
def load() -> Catalog:
    text = resources.files("qwencli").joinpath("data/catalog.tsv").read_text(encoding="utf-8")
    return parse_catalog(text)
