"""Which build of a model `resolve()` hands out: the GGUF (llama.cpp) or the safetensors (torch).

`route()` gathers the facts (catalog rows, what is downloaded, sizes) and asks the pure
`backends.choose.choose()`; the hardware is probed only when the answer depends on it. It returns
a `ResolvedModel` for torch, or None with the reason when the GGUF path of `resolve()` goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..errors import ModelNotFound, UsageError
from .catalog import GGUF, CatalogEntry, load as load_catalog
from .names import ModelRef
from .resolve import ResolvedModel

#: `--quant` values that pick a torch build of a catalog name, and the catalog format they name.
TORCH_QUANTS = {"bf16": "safetensors", "awq": "awq", "gptq_int4": "gptq-int4", "gptq_int8": "gptq-int8",
                "fp8": "fp8"}


def route(name: str, ref: ModelRef, *, backend: str = "auto", pull: bool = True, force: bool = False,
          probe: Callable | None = None) -> tuple[ResolvedModel | None, str]:
    from ..backends.choose import ModelFacts, choose, probe_hardware

    probe = probe or probe_hardware
    if ref.kind == "path":
        return _route_path(name, ref, backend, probe)
    if backend not in ("auto", "torch"):
        return None, f"--backend {backend}"
    if ref.quant and ref.quant not in TORCH_QUANTS:
        if backend == "torch":
            raise UsageError(f"{ref.quant} is a GGUF quantization; the torch backend loads safetensors builds",
                             f"--quant takes {', '.join(TORCH_QUANTS)} with --backend torch")
        return None, f"{ref.quant} is a GGUF quantization: llama.cpp"
    from .pull_torch import find_local

    entry = _torch_entry(ref)
    repo = entry.repo if entry is not None else ref.repo
    local = find_local(repo)
    has_gguf = _has_gguf(ref, local is not None)
    if ref.quant in TORCH_QUANTS:
        has_gguf = False  # a torch quant was asked for by name
    has_torch = entry is not None or local is not None or (backend == "torch" and ref.kind == "repo")
    torch_bytes = local.size if local is not None else entry.approx_bytes if entry is not None else None
    facts = ModelFacts(name=ref.display, has_gguf=has_gguf, has_safetensors=has_torch, torch_bytes=torch_bytes or None,
                       kv_bytes=kv_cache_bytes(local.path) if local is not None else None, downloaded=local is not None)
    choice = choose(backend, facts, probe)
    if choice.backend == "llama":
        return None, choice.reason
    hints = dict(entry.hints) if entry is not None else {}
    if local is None:
        if not pull:
            from . import store

            if store.find(ref) is not None:  # no download now (a server, `qwen show`): the GGUF that is here
                return None, (f"{choice.reason}, but only the GGUF is downloaded: llama.cpp"
                              f" (qwen pull --backend torch {ref.display} for torch)")
            raise ModelNotFound(f"the safetensors build of {ref.display} is not downloaded",
                                f"qwen pull --backend torch {ref.display}")
        from . import hub

        if hub.offline():
            raise ModelNotFound(f"{ref.display} is not downloaded, and HF_HUB_OFFLINE=1 forbids the network",
                                f"unset HF_HUB_OFFLINE and run qwen pull --backend torch {ref.display}")
        from .pull_torch import pull as pull_torch

        assert repo is not None
        local = pull_torch(repo, force=force, probe=probe)
    hints.update(quant=local.quant, repo=local.repo)
    return ResolvedModel(name=name, format=local.format, path=local.path, repo=local.repo, hints=hints,
                         reason=choice.reason), choice.reason


def torch_repo(ref: ModelRef) -> str:
    """The repo `qwen pull --backend torch` downloads for `ref`."""
    entry = _torch_entry(ref)
    if entry is not None:
        return entry.repo
    if ref.kind == "repo" and ref.repo:
        return ref.repo
    raise ModelNotFound(f"{ref.display} has no safetensors build in the catalog", f"qwen pull {ref.display}")


def _route_path(name: str, ref: ModelRef, backend: str, probe) -> tuple[ResolvedModel | None, str]:
    from ..backends.choose import ModelFacts, choose

    path = ref.path
    assert path is not None
    if not path.is_dir():
        if backend == "torch":
            raise UsageError(f"the torch backend loads Hugging Face folders (safetensors), and {name} is a file",
                             "give the model's folder, or run the GGUF with --backend llama")
        return None, "a GGUF file: llama.cpp"
    if not (path / "config.json").is_file():
        return None, "not a Hugging Face folder: the GGUF loader explains"  # "… is a directory"
    if backend == "llama":
        raise UsageError(f"llama.cpp runs GGUF files, and {name} is a Hugging Face folder",
                         "use --backend torch (or auto), or give the model's .gguf file")
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    facts = ModelFacts(name=name, has_gguf=False, has_safetensors=True, torch_bytes=size or None,
                       kv_bytes=kv_cache_bytes(path), downloaded=True)
    choice = choose(backend, facts, probe)
    return ResolvedModel(name=name, format="safetensors", path=path, reason=choice.reason), choice.reason


def _torch_entry(ref: ModelRef) -> CatalogEntry | None:
    """The catalog's torch row for `ref` (bf16 safetensors unless a torch quant is named)."""
    catalog = load_catalog()
    if ref.kind == "repo" and ref.repo:
        entry = catalog.by_repo(ref.repo)
        return entry if entry is not None and entry.format != GGUF else None
    if ref.kind != "catalog" or ref.entry is None:
        return None
    wanted = TORCH_QUANTS.get(ref.quant or "bf16", "safetensors")
    return next((e for e in catalog.rows(ref.entry.name) if e.format == wanted), None)


def _has_gguf(ref: ModelRef, torch_local: bool) -> bool:
    if ref.kind == "catalog" and ref.entry is not None:
        return load_catalog().gguf(ref.entry.name) is not None
    if ref.entry is not None:
        return ref.entry.format == GGUF
    return not torch_local  # an unknown repo: GGUF, as before, unless its safetensors are what is here


def kv_cache_bytes(folder: Path, tokens: int | None = None) -> int | None:
    """KV cache size for `tokens` (default the fit context) at 2 bytes a value, from config.json."""
    from ..backends.choose import FIT_CONTEXT

    try:
        config = json.loads((folder / "config.json").read_text())
        config = config.get("text_config") or config
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head_dim * 2 * (tokens or FIT_CONTEXT)
