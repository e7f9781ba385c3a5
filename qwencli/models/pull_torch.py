"""`qwen pull --backend torch NAME`: the safetensors build of a model, for the torch backend.

Only what transformers needs is fetched — config, tokenizer files, generation config, the chat
template, `*.safetensors` and their index — through the same machinery as GGUF pulls
(`download.fetch`: resumable, sha256-verified), and it becomes visible (snapshot links, then
refs/main) only once every file is complete. Pickle weights (`*.bin`) are downloaded only with
`--allow-pickle` and only when there are no safetensors; a repo's own Python code (`*.py`, for
`auto_map`) only with `--trust-remote-code`.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import DownloadError, InvalidModelFile
from ..formats.hf_folder import PICKLE_WEIGHTS
from ..hardware import probe_hardware
from ..resolved import TRANSFORMERS_FORMATS
from ..sizes import human_size
from . import download, fit, hub, store
from .backend_route import FIT_CONTEXT, ModelFacts, context_room
from .cache import RepoCache, hub_cache, safe_relpath
from .catalog import torch_repo
from .fit import ModelTooLarge
from .progress import PullProgress
from .select import GGUFChoice, RepoFile

#: Top-level files a transformers model needs besides its weights.
NEEDED = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",  # vision-language repos (Qwen3-VL) keep the template here
        "preprocessor_config.json",  # their image processor's settings: the torch backend reads images with it
        "quantize_config.json",
        "model.safetensors.index.json",
        "LICENSE",
        "README.md",
    }
)


def wanted_files(
    files: tuple[RepoFile, ...] | list[RepoFile],
    repo: str,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> list[RepoFile]:
    """The files to pull from a repo listing; raise when it has no weights we may fetch."""
    top = [f for f in files if "/" not in f.path]
    picked = [f for f in top if f.path in NEEDED or f.path.endswith(".safetensors")]
    if trust_remote_code:
        picked += [f for f in top if f.path.endswith(".py")]
    if not any(f.path.endswith(".safetensors") for f in picked):
        pickles = [f for f in top if f.path.endswith(PICKLE_WEIGHTS) or f.path == "pytorch_model.bin.index.json"]
        if not pickles:
            raise InvalidModelFile(
                f"{repo} has no safetensors weights", "qwen pull without --backend torch takes a GGUF repo"
            )
        if not allow_pickle:
            raise InvalidModelFile(
                f"{repo} has only pickle weights ({pickles[0].path}); qwencli refuses them by "
                "default: loading a pickle can run arbitrary code",
                "use a repo with safetensors weights or its GGUF build (--backend llama); if you "
                f"trust this repo: qwen pull --backend torch --allow-pickle {repo}",
            )
        picked += pickles
    if not any(f.path == "config.json" for f in picked):
        raise InvalidModelFile(f"{repo} has no config.json: it is not a transformers model")
    return picked


def check_memory(repo: str, files: list[RepoFile], probe=None) -> None:
    """Before downloading: will the weights, and room for a context, fit where torch runs them —
    the GPU's free memory with CUDA, else free RAM? Raises ModelTooLarge (pull --force skips this)."""
    weights = sum(f.size for f in files if f.path.endswith((".safetensors",) + PICKLE_WEIGHTS))
    hardware = (probe or probe_hardware)()
    if hardware.cuda_available:
        where, available = "free GPU memory", hardware.free_gpu_bytes
    else:
        where, available = "memory available (no CUDA GPU: torch would run on the CPU)", fit.available_memory()
    need = weights + context_room(ModelFacts(name=repo, has_gguf=False, has_safetensors=True, torch_bytes=weights))
    if need > available:
        raise ModelTooLarge(
            f"{repo} needs about {human_size(need)} (weights and a {FIT_CONTEXT}-token context); "
            f"this machine has {human_size(available)} of {where}",
            "a GGUF build runs in far less (qwen pull NAME, for llama.cpp) — or --force to pull it anyway",
        )


def pull(
    repo: str,
    *,
    progress: PullProgress | None = None,
    cache_dir: Path | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    force: bool = False,
    probe=None,
) -> store.LocalModel:
    """Download the safetensors build of `repo` (or find it up to date); return it as in the store."""
    started = time.monotonic()
    progress = progress or PullProgress()
    if hub.offline() and (local := store.find_torch_build(repo, cache_dir)) is not None:
        progress.finish(f"{local.name} is downloaded (HF_HUB_OFFLINE=1: not checked for updates) → {local.path}")
        return local
    listing = hub.fetch_listing(repo)
    files = wanted_files(listing.files, repo, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    for file in files:
        safe_relpath(file.path)
    cache = RepoCache(cache_dir or hub_cache(), repo)
    if all(cache.pointer(listing.commit, f.path).exists() for f in files):
        model = _found(cache, listing.commit)
        progress.finish(f"{model.name} is up to date ({human_size(model.size)}) → {model.path}")
        return model
    if not force:
        check_memory(repo, files, probe)
    fit.check_disk(cache, GGUFChoice("safetensors", "shards", tuple(files)))
    cache.prepare()
    with progress:
        blobs = [download.fetch(cache, listing.commit, f, progress) for f in files]
        for file, blob in zip(files, blobs):
            cache.link(listing.commit, file.path, blob)
        cache.write_ref(listing.commit)
    model = _found(cache, listing.commit)
    seconds = time.monotonic() - started
    progress.finish(f"pulled {model.name} (safetensors): {human_size(model.size)} in {seconds:.1f} s → {model.path}")
    return model


def pull_ref(
    ref, *, allow_pickle: bool = False, trust_remote_code: bool = False, force: bool = False
) -> store.LocalModel:
    """`qwen pull --backend torch NAME`: the torch build the name stands for."""
    return pull(torch_repo(ref), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, force=force)


def _found(cache: RepoCache, commit: str) -> store.LocalModel:
    for model in store.repo_models(cache):
        if model.format in TRANSFORMERS_FORMATS and model.commit == commit:
            return model
    raise DownloadError(f"the safetensors files were installed but cannot be found in {cache.folder}")
