"""Will it fit? Memory and disk checks before a download, and `--quant auto`.

llama.cpp maps the weights and adds the KV cache and compute buffers; a tenth of the file plus
512 MiB covers a default context for every Qwen size (a 7B at 4k tokens of context needs about
0.5 GB of KV cache). The estimate only has to be good enough to stop a 40 GB download on a 16 GB laptop.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import DownloadError, QwenError
from ..sizes import human_size
from . import catalog as catalog_module
from .cache import RepoCache
from .download import expected_etag
from .names import ModelRef
from .select import STANDARD_QUANTS, GGUFChoice

OVERHEAD = 512 << 20


class ModelTooLarge(QwenError):
    """The model would not fit in this machine's memory."""

    http_status = 400
    error_type = "invalid_request_error"


def memory_needed(size: int) -> int:
    return size + size // 10 + OVERHEAD


def available_memory() -> int:
    from ..hardware import available_memory as probe

    return probe()


def best_fit(models: list[GGUFChoice], available: int) -> GGUFChoice | None:
    """The largest standard quant that fits (plain files before shard sets of the same quant)."""
    fitting = [m for m in models if m.quant in STANDARD_QUANTS and memory_needed(m.size) <= available]
    if not fitting:
        return None
    return max(fitting, key=lambda m: (m.size, STANDARD_QUANTS.index(m.quant), m.layout == "single"))


def check_memory(ref: ModelRef, choice: GGUFChoice, models: list[GGUFChoice], available: int | None = None) -> None:
    available = available_memory() if available is None else available
    need = memory_needed(choice.size)
    if need <= available:
        return
    message = (
        f"{ref.name}:{choice.quant} needs about {human_size(need)} of memory;"
        f" this machine has {human_size(available)} available"
    )
    raise ModelTooLarge(message, suggestion(ref, models, available) + " — or --force to pull it anyway")


def suggestion(ref: ModelRef, models: list[GGUFChoice], available: int) -> str:
    smaller = best_fit(models, available)
    if smaller is not None:
        return f"{smaller.quant} ({human_size(smaller.size)}) fits: qwen pull {ref.name}:{smaller.quant}"
    if ref.entry is not None:
        sizes = [
            e
            for e in catalog_module.load().same_family(ref.entry)
            if memory_needed(e.approx_bytes) <= available and e.name != ref.entry.name
        ]
        if sizes:
            e = sizes[-1]
            return f"{e.name} (about {human_size(e.approx_bytes)}) fits: qwen pull {e.name}"
    return "no size of this model fits; try a smaller model"


def auto(ref: ModelRef, models: list[GGUFChoice], available: int | None = None) -> GGUFChoice:
    """`--quant auto`: the largest standard quant that fits in memory."""
    available = available_memory() if available is None else available
    choice = best_fit(models, available)
    if choice is None:
        smallest = min(models, key=lambda m: m.size)
        raise ModelTooLarge(
            f"no quant of {ref.name} fits: the smallest ({smallest.quant}) needs about"
            f" {human_size(memory_needed(smallest.size))}, this machine has {human_size(available)} available",
            suggestion(ref, [], available),
        )
    return choice


def bytes_to_download(cache: RepoCache, choice: GGUFChoice) -> int:
    """What the pull still has to write: missing files less their partial bytes, plus a joined copy."""
    total = 0
    for file in choice.files:
        etag = expected_etag(file)
        if etag and cache.blob(etag).exists():
            continue
        partial = cache.partial(etag) if etag else None
        done = partial.stat().st_size if partial is not None and partial.exists() else 0
        total += max(file.size - done, 0)
    if choice.layout == "byte-split":
        total += choice.size  # the parts are joined into a new file before they are deleted
    return total


def check_disk(cache: RepoCache, choice: GGUFChoice) -> None:
    need = bytes_to_download(cache, choice)
    free = free_space(cache.root)
    if need > free:
        raise DownloadError(
            f"not enough disk space: {choice.quant} needs {human_size(need)} more,"
            f" {human_size(free)} free in {cache.root}",
            "free some space, or set HF_HOME (or HF_HUB_CACHE) to a bigger disk",
        )


def free_space(path: Path) -> int:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return 0
