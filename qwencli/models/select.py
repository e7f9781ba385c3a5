"""Which files of a repo make up one GGUF model. The repo's file listing is the truth.

Qwen publishes GGUF four ways (shared/reference/qwen-models.md): one file; a raw byte split
(`x.gguf.a`, `x.gguf.b`, … joined after download); a gguf-split shard set side by side
(`x-00001-of-00003.gguf`); or a shard set in a per-quant folder (`Q4_K_M/x-Q4_K_M-00001-of-00005.gguf`).
Community repos add unsloth's dynamic quants (`x-UD-Q4_K_XL.gguf`, quant `ud_q4_k_xl`), bartowski's
`Qwen_` prefix, and sidecars that are not models: vision projectors (`mmproj-*.gguf`), MTP draft
heads (`MTP/mtp-*.gguf`) and imatrix data. The same rules run on a hub listing before a pull and on
a cached snapshot before a run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..errors import ModelNotFound, UnsupportedModel

SHARD = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
BYTE_PART = re.compile(r"^(?P<base>.+\.gguf)\.(?P<part>[a-z])$", re.IGNORECASE)
#: A quantization name inside a file name, as a whole token (`q4_k` does not match `q4_k_m`); unsloth's
#: `UD-` prefix belongs to it (`UD-Q4_K_XL` is a different file from `Q4_K_XL`).
QUANT_IN_NAME = re.compile(
    r"(?<![A-Za-z0-9])((?:ud[-_])?i?q\d(?:_[a-z0-9]+)*|bf16|f16|fp16|f32)(?![A-Za-z0-9_])", re.IGNORECASE
)
#: The usual quants, smallest to largest: `--quant auto` picks the largest of these that fits.
STANDARD_QUANTS = (
    "q2_k",
    "q3_k_s",
    "q3_k_m",
    "q3_k_l",
    "q4_0",
    "q4_1",
    "q4_k_s",
    "q4_k_m",
    "q5_0",
    "q5_1",
    "q5_k_s",
    "q5_k_m",
    "q6_k",
    "q8_0",
)
#: When the default quant is missing, the first of these the repo has.
FALLBACK_ORDER = (
    "q4_k_m",
    "ud_q4_k_xl",
    "q4_k_s",
    "q4_0",
    "q5_k_m",
    "q5_0",
    "q6_k",
    "q8_0",
    "q3_k_m",
    "ud_q3_k_xl",
    "q3_k_l",
    "q2_k",
    "ud_q2_k_xl",
    "iq4_xs",
    "f16",
    "bf16",
    "fp16",
)

Layout = Literal["single", "shards", "byte-split"]


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo, from a hub listing or a cached snapshot."""

    path: str  # relative, '/'-separated
    size: int
    sha256: str | None = None  # LFS sha256 (hub listings)
    blob_id: str | None = None  # git object id (hub listings)


@dataclass(frozen=True)
class GGUFChoice:
    """The files of one GGUF model in a repo."""

    quant: str  # lower case, as found in the file name ("unknown" if none)
    layout: Layout
    files: tuple[RepoFile, ...]  # in load/join order

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def entry_path(self) -> str:
        """The path llama.cpp is given: the file, the first shard, or the joined file's name."""
        if self.layout == "byte-split":
            return BYTE_PART.match(self.files[0].path)["base"]  # type: ignore[index]
        return self.files[0].path


def quant_of(path: str) -> str | None:
    found = QUANT_IN_NAME.findall(path.rsplit("/", 1)[-1]) or QUANT_IN_NAME.findall(path)
    return found[-1].lower().replace("-", "_") if found else None


def sidecar_kind(path: str) -> str | None:
    """ "mmproj" (a vision projector), "mtp" (a speculative draft head), "imatrix", or None for weights."""
    parts = path.lower().split("/")
    name = parts[-1]
    if "mmproj" in name:
        return "mmproj"
    if name.startswith("mtp-") or "mtp" in parts[:-1]:
        return "mtp"
    if name.startswith("imatrix"):
        return "imatrix"
    return None


#: Projector precisions, preferred first: F16 and BF16 are what mtmd's CPU path is tested with and
#: lose nothing that matters at a projector's size; F32 doubles it; a quantized one loses accuracy.
PROJECTOR_PRECISION = ("f16", "bf16", "f32")


def projector_for(files: Iterable[RepoFile], model: GGUFChoice) -> RepoFile | None:
    """The vision projector that goes with `model` in a repo listing (or a snapshot), None if none.

    Qwen's own repos hold one model per repo, each with `mmproj-<model>-F16.gguf`; community repos
    hold `mmproj-F16.gguf`, `mmproj-BF16.gguf`, `mmproj-F32.gguf` side by side. So: the projector
    whose name after `mmproj-` shares the longest start with the model's file name, then the
    preferred precision, then the smallest."""
    found = [f for f in files if sidecar_kind(f.path) == "mmproj" and f.path.lower().endswith(".gguf")]
    if not found:
        return None
    stem = _stem(model.entry_path)

    def shared(f: RepoFile) -> int:
        rest = _stem(f.path.rsplit("/", 1)[-1].lower().split("mmproj", 1)[1])
        n = 0
        while n < min(len(rest), len(stem)) and rest[n] == stem[n]:
            n += 1
        return n

    def precision(f: RepoFile) -> int:
        quant = quant_of(f.path) or ""
        return PROJECTOR_PRECISION.index(quant) if quant in PROJECTOR_PRECISION else len(PROJECTOR_PRECISION)

    return min(found, key=lambda f: (-shared(f), precision(f), f.size, f.path))


def _stem(path: str) -> str:
    """A file's name without its folder, quant, shard number and extension: what a model and its
    projector have in common (`Qwen3VL-8B-Instruct` in `Qwen3VL-8B-Instruct-Q4_K_M.gguf`)."""
    name = path.rsplit("/", 1)[-1].lower()
    if shard := SHARD.match(name):
        name = shard["stem"]
    name = QUANT_IN_NAME.sub("", name.removesuffix(".gguf"))
    return name.strip("-_.")


def _is_auxiliary(path: str) -> bool:
    # Sidecars sit beside the weights; a text-only pull never takes one, and none is a model.
    return sidecar_kind(path) is not None


def gguf_models(files: Iterable[RepoFile]) -> list[GGUFChoice]:
    """Every complete GGUF model in a file list: single files, shard sets, byte-split sets."""
    singles: list[GGUFChoice] = []
    shard_sets: dict[tuple[str, int], dict[int, RepoFile]] = {}
    byte_sets: dict[str, dict[str, RepoFile]] = {}
    for f in files:
        name = f.path.rsplit("/", 1)[-1]
        if _is_auxiliary(f.path):
            continue
        if shard := SHARD.match(name):
            folder = f.path[: len(f.path) - len(name)]
            shard_sets.setdefault((folder + shard["stem"], int(shard["count"])), {})[int(shard["no"])] = f
        elif part := BYTE_PART.match(f.path):
            byte_sets.setdefault(part["base"], {})[part["part"].lower()] = f
        elif name.lower().endswith(".gguf"):
            singles.append(GGUFChoice(quant_of(f.path) or "unknown", "single", (f,)))
    choices = list(singles)
    for (_stem, count), shards in shard_sets.items():
        if count >= 1 and sorted(shards) == list(range(1, count + 1)):
            ordered = tuple(shards[i] for i in range(1, count + 1))
            choices.append(GGUFChoice(quant_of(ordered[0].path) or "unknown", "shards", ordered))
    for base, parts in byte_sets.items():
        letters = sorted(parts)
        if len(letters) >= 2 and letters == [chr(ord("a") + i) for i in range(len(letters))]:
            ordered = tuple(parts[p] for p in letters)
            choices.append(GGUFChoice(quant_of(base) or "unknown", "byte-split", ordered))
    return choices


def incomplete_sets(files: Iterable[RepoFile]) -> list[str]:
    """Shard sets with missing shards (to explain why a quant that seems present is not)."""
    sets: dict[tuple[str, int], set[int]] = {}
    for f in files:
        if shard := SHARD.match(f.path.rsplit("/", 1)[-1]):
            sets.setdefault(
                (f.path[: -len(f.path.rsplit("/", 1)[-1])] + shard["stem"], int(shard["count"])), set()
            ).add(int(shard["no"]))
    return [stem for (stem, count), nos in sets.items() if nos != set(range(1, count + 1))]


_LAYOUT_PREFERENCE = {"single": 0, "shards": 1, "byte-split": 2}


def choose(files: Iterable[RepoFile], quant: str, *, repo: str) -> GGUFChoice:
    """The model for `quant` (case-insensitive, whole token): one plain file if there is one, else a
    complete shard set, else a byte-split set. Raise with the quants that do exist."""
    files = list(files)
    models = gguf_models(files)
    if not models:
        raise _no_gguf(files, repo)
    wanted = quant.lower().replace("-", "_")
    matches = [m for m in models if m.quant == wanted]
    if not matches:
        available = available_quants(models)
        broken = [s for s in incomplete_sets(files) if quant_of(s) == wanted]
        if broken:
            raise ModelNotFound(
                f"{repo}: the {quant} shard set is incomplete on the hub ({broken[0]})",
                f"available: {', '.join(available)}",
            )
        raise ModelNotFound(f"{repo} has no {quant} GGUF", f"available quants: {', '.join(available)}")
    # A plain file wins (repos re-uploaded as one file keep their old shard sets); then shorter paths.
    return min(matches, key=lambda m: (_LAYOUT_PREFERENCE[m.layout], len(m.files), len(m.entry_path), m.entry_path))


def default_quant(models: list[GGUFChoice], preferred: str | None) -> str:
    """The quant to use when none was asked for: the catalog's default, else a sensible one present."""
    present = {m.quant for m in models}
    for q in ((preferred.lower(),) if preferred else ()) + FALLBACK_ORDER:
        if q in present:
            return q
    return sorted(present)[0]


def available_quants(models: list[GGUFChoice]) -> list[str]:
    order = {q: i for i, q in enumerate(STANDARD_QUANTS)}
    return sorted({m.quant for m in models}, key=lambda q: (order.get(q, len(order)), q))


def _no_gguf(files: list[RepoFile], repo: str) -> Exception:
    names = [f.path for f in files]
    if any(n.endswith(".safetensors") for n in names):
        return UnsupportedModel(
            f"{repo} holds safetensors weights, not GGUF",
            "the torch backend runs those (qwen run … --backend torch); for llama.cpp pick the repo's -GGUF twin",
        )
    return ModelNotFound(f"{repo} has no GGUF files", "pick a repo whose name ends in -GGUF")
