"""The routing policy: which backend runs a model, and why — llama.cpp (the GGUF build) or torch
(the safetensors build).

`choose(requested, facts, probe)` is a pure function of the request, what is known about the model
(`ModelFacts`) and the machine; `probe` is called only when the answer depends on it (a GGUF-only
model never probes), and tests pass a fake. `decide()` gathers those facts for a name — catalog
rows, what is downloaded, sizes — and asks `choose()`; `resolve.route()` acts on the decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import BackendUnavailable, UnsupportedModel, UsageError
from ..hardware import TORCH_INSTALL, Hardware, probe_hardware
from .catalog import GGUF, TORCH_QUANTS, CatalogEntry, torch_entry
from .catalog import load as load_catalog
from .names import ModelRef
from .store import LocalModel, find_torch_build

#: The context the fit check makes room for, in tokens (the default context of both backends).
FIT_CONTEXT = 8192
GiB = 1 << 30

Name = Literal["llama", "torch"]


@dataclass(frozen=True)
class ModelFacts:
    """What is known about a model before loading it."""

    name: str
    has_gguf: bool  # a GGUF build exists (downloaded or in the catalog)
    has_safetensors: bool  # a safetensors build exists
    #: Weights in bytes at the precision torch would load them (bf16/fp16, or the AWQ/GPTQ size).
    torch_bytes: int | None = None
    #: KV cache for FIT_CONTEXT tokens, when the config is known (else an estimate is used).
    kv_bytes: int | None = None
    #: The safetensors build is on disk (a folder given by path, or pulled before).
    downloaded: bool = False


@dataclass(frozen=True)
class Choice:
    backend: Name
    reason: str


def context_room(facts: ModelFacts) -> int:
    """Room for the KV cache and activations: exact KV size plus 0.5 GiB when the config is known,
    else a fifth of the weights (at least 1 GiB)."""
    if facts.kv_bytes is not None:
        return facts.kv_bytes + GiB // 2
    return max(GiB, (facts.torch_bytes or 0) // 5)


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _llama_reason(why: str, hw: Hardware | None) -> str:
    where = "llama.cpp"
    if hw is not None and hw.llama_gpu_offload:
        where += " with layers offloaded to the GPU"
    return f"{why}: GGUF on {where}"


def choose(requested: str, facts: ModelFacts, probe: Hardware | Callable[[], Hardware]) -> Choice:
    """The backend for `facts` under `--backend requested` (auto, llama or torch)."""
    hardware: list[Hardware] = []

    def hw() -> Hardware:
        if not hardware:
            hardware.append(probe() if callable(probe) else probe)
        return hardware[0]

    if requested == "llama":
        if not facts.has_gguf:
            raise UnsupportedModel(
                f"{facts.name} has no GGUF build for llama.cpp", f"run it on torch: --backend torch ({TORCH_INSTALL})"
            )
        return Choice("llama", "--backend llama")
    if requested == "torch":
        if not facts.has_safetensors:
            raise UnsupportedModel(f"{facts.name} has no safetensors build for torch", "--backend llama runs the GGUF")
        if not hw().torch_usable:
            raise BackendUnavailable(
                "the torch backend needs torch and transformers, which are not installed", TORCH_INSTALL
            )
        device = "CUDA" if hw().cuda_available else "CPU (slow; GGUF on llama.cpp is the CPU path)"
        return Choice("torch", f"--backend torch, on {device}")
    if not facts.has_safetensors:
        return Choice("llama", "only a GGUF build exists: llama.cpp")
    if not facts.has_gguf:
        if not hw().torch_usable:
            raise BackendUnavailable(
                f"{facts.name} has no GGUF build; its safetensors weights need the torch backend", TORCH_INSTALL
            )
        if hw().cuda_available:
            return Choice("torch", "only a safetensors build exists: torch on CUDA")
        if not facts.downloaded:  # do not start a big download to run it at CPU speed unasked
            raise UnsupportedModel(
                f"{facts.name} has no GGUF build, and torch has no CUDA GPU here",
                "--backend torch runs its safetensors build on the CPU (slowly)",
            )
        return Choice("torch", "a safetensors model: torch on the CPU (slow; GGUF on llama.cpp is the CPU path)")
    h = hw()
    if not h.torch_installed or not h.transformers_installed:
        return Choice("llama", _llama_reason(f"torch is not installed ({TORCH_INSTALL} for CUDA GPUs)", h))
    if h.torch_cuda is None:
        cpu_only = f"torch {h.torch_version or ''} is a CPU-only build".replace("  ", " ")
        return Choice("llama", _llama_reason(cpu_only, h))
    if not h.gpus:
        return Choice("llama", _llama_reason("no CUDA GPU found", h))
    if facts.torch_bytes is None:
        return Choice("llama", _llama_reason("the model's size is unknown, so it may not fit the GPU", h))
    need = facts.torch_bytes + context_room(facts)
    best = max(h.gpus, key=lambda g: g.free_bytes)
    if need > best.free_bytes:
        too_big = (
            f"needs {_gb(need)} on the GPU (weights + {FIT_CONTEXT}-token context),"
            f" {best.name} has {_gb(best.free_bytes)} free"
        )
        return Choice("llama", _llama_reason(too_big, h))
    return Choice("torch", f"fits on {best.name}: needs {_gb(need)} of {_gb(best.free_bytes)} free (CUDA, torch)")


@dataclass(frozen=True)
class Decision:
    """`choose()`'s answer for a name, with what `resolve()` needs to hand out the torch build."""

    backend: Name
    reason: str
    repo: str | None = None  # the repo of the safetensors build
    local: LocalModel | None = None  # that build, when it is downloaded
    entry: CatalogEntry | None = None  # its catalog row


def decide(
    name: str, ref: ModelRef, backend: str = "auto", probe: Hardware | Callable[[], Hardware] | None = None
) -> Decision:
    """The backend `--backend backend` runs `ref` on here. Raises when the request cannot be met."""
    probe = probe or probe_hardware
    if ref.kind == "path":
        return _decide_path(name, ref, backend, probe)
    if backend not in ("auto", "torch"):
        return Decision("llama", f"--backend {backend}")
    if ref.quant and ref.quant not in TORCH_QUANTS:
        if backend == "torch":
            raise UsageError(
                f"{ref.quant} is a GGUF quantization; the torch backend loads safetensors builds",
                f"--quant takes {', '.join(TORCH_QUANTS)} with --backend torch",
            )
        return Decision("llama", f"{ref.quant} is a GGUF quantization: llama.cpp")
    entry = torch_entry(ref)
    repo = entry.repo if entry is not None else ref.repo
    local = find_torch_build(repo)
    has_gguf = _has_gguf(ref, local is not None)
    if ref.quant in TORCH_QUANTS:
        has_gguf = False  # a torch quant was asked for by name
    has_torch = entry is not None or local is not None or (backend == "torch" and ref.kind == "repo")
    torch_bytes = local.size if local is not None else entry.approx_bytes if entry is not None else None
    facts = ModelFacts(
        name=ref.display,
        has_gguf=has_gguf,
        has_safetensors=has_torch,
        torch_bytes=torch_bytes or None,
        kv_bytes=kv_cache_bytes(local.path) if local is not None else None,
        downloaded=local is not None,
    )
    choice = choose(backend, facts, probe)
    return Decision(choice.backend, choice.reason, repo=repo, local=local, entry=entry)


def _decide_path(name: str, ref: ModelRef, backend: str, probe) -> Decision:
    path = ref.path
    assert path is not None
    if not path.is_dir():
        if backend == "torch":
            raise UsageError(
                f"the torch backend loads Hugging Face folders (safetensors), and {name} is a file",
                "give the model's folder, or run the GGUF with --backend llama",
            )
        return Decision("llama", "a GGUF file: llama.cpp")
    if not (path / "config.json").is_file():
        return Decision("llama", "not a Hugging Face folder: the GGUF loader explains")  # "… is a directory"
    if backend == "llama":
        raise UsageError(
            f"llama.cpp runs GGUF files, and {name} is a Hugging Face folder",
            "use --backend torch (or auto), or give the model's .gguf file",
        )
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    facts = ModelFacts(
        name=name,
        has_gguf=False,
        has_safetensors=True,
        torch_bytes=size or None,
        kv_bytes=kv_cache_bytes(path),
        downloaded=True,
    )
    choice = choose(backend, facts, probe)
    return Decision(choice.backend, choice.reason)


def _has_gguf(ref: ModelRef, torch_local: bool) -> bool:
    if ref.kind == "catalog" and ref.entry is not None:
        return load_catalog().gguf(ref.entry.name) is not None
    if ref.entry is not None:
        return ref.entry.format == GGUF
    return not torch_local  # an unknown repo: GGUF, as before, unless its safetensors are what is here


def kv_cache_bytes(folder: Path, tokens: int | None = None) -> int | None:
    """KV cache size for `tokens` (default the fit context) at 2 bytes a value, from config.json."""
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
