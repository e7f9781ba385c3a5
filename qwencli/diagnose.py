"""What `qwen doctor` reports: the machine, the engines installed, and which backend runs what, and why.

Versions come from package metadata (no import); only llama-cpp-python is imported, to ask its
build about GPU offload and CPU features. torch is never imported here (see `hardware`).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("llama-cpp-python", "torch", "transformers", "safetensors", "accelerate", "gptqmodel", "optimum")
QUANT_INSTALL = "pip install gptqmodel optimum accelerate"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_kinds() -> list[tuple[str, Any]]:
    """Example models of each kind, as `choose` sees them."""
    from .models.backend_route import ModelFacts
    from .models.catalog import load

    catalog = load()

    def example(name: str) -> tuple[str, Any]:
        rows = catalog.rows(name)
        has_gguf = any(e.format == "gguf" for e in rows)
        torch_bytes = next((e.approx_bytes for e in rows if e.format == "safetensors"), None)
        label = f"{name} ({'GGUF and safetensors' if has_gguf else 'safetensors only'})"
        return label, ModelFacts(
            name, has_gguf=has_gguf, has_safetensors=torch_bytes is not None, torch_bytes=torch_bytes
        )

    return [
        ("a .gguf file", ModelFacts("model.gguf", has_gguf=True, has_safetensors=False)),
        ("a Hugging Face folder", ModelFacts("./model-folder", has_gguf=False, has_safetensors=True, downloaded=True)),
        *(example(name) for name in ("qwen2.5-7b", "qwen2.5-0.5b", "qwen1.5-moe-a2.7b")),
    ]


def engines_report(hw, model: str) -> dict[str, Any]:
    """vLLM and SGLang: installed (package metadata, no import: both load torch), the GPUs and links they
    would use, and the command `qwen serve MODEL --engine vllm` would run here."""
    from .engines.plan import Machine
    from .engines.run import INSTALL, EngineServe, dry_run_text, plan_for
    from .errors import QwenError

    machine = Machine(gpus=len(hw.gpus), gpu_bytes=min((g.total_bytes for g in hw.gpus), default=0))
    installed = {name: _version(name) for name in ("vllm", "sglang")}
    report: dict[str, Any] = {
        "installed": installed,
        "install": {name: INSTALL[name] for name, version in installed.items() if not version},
        "gpus": machine.gpus,
        "interconnect": _interconnect() if hw.gpus else None,
        "model": model,
    }
    try:
        report["command"] = dry_run_text(plan_for(EngineServe(model=model, engine="vllm", machine=machine)))
    except QwenError as exc:
        report["command"] = None
        report["reason"] = exc.message + (f" ({exc.hint})" if exc.hint else "")
    return report


def _interconnect() -> str | None:
    """NVLink or PCIe between the GPUs, from `nvidia-smi topo -m` (NV# entries are NVLink)."""
    import re
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    return "NVLink" if re.search(r"\bNV\d+\b", out) else "PCIe (no NVLink between GPUs)"


def gather(hardware=None, *, engine_model: str = "qwen3.6-35b-a3b") -> dict[str, Any]:
    """Everything `qwen doctor` prints, as JSON-ready data. `hardware` is injectable for tests."""
    from .errors import QwenError
    from .hardware import (
        LLAMA_CUDA_INSTALL,
        TORCH_INSTALL,
        available_memory,
        llama_features,
        nvidia_present,
        physical_cores,
        probe_hardware,
        total_memory,
    )
    from .models.backend_route import choose

    hw = hardware or probe_hardware(llama=True)
    llama = llama_features()
    versions = {p: _version(p) for p in PACKAGES}
    backends: list[dict[str, Any]] = []
    for label, facts in model_kinds():
        try:
            choice = choose("auto", facts, hw)
            backends.append({"model": label, "backend": choice.backend, "reason": choice.reason})
        except QwenError as exc:
            backends.append({"model": label, "backend": None, "reason": exc.message, "hint": exc.hint})
    install = []
    if not hw.torch_usable:
        install.append({"for": "the torch backend (safetensors models, CUDA GPUs)", "command": TORCH_INSTALL})
    elif hw.torch_cuda is None and nvidia_present():
        install.append(
            {
                "for": "torch on this NVIDIA GPU (the installed torch is CPU-only)",
                "command": "pip install --force-reinstall torch  (a CUDA build: see pytorch.org/get-started)",
            }
        )
    if nvidia_present() and llama.get("installed") and not llama.get("gpu_offload"):
        install.append({"for": "llama.cpp on this NVIDIA GPU", "command": LLAMA_CUDA_INSTALL})
    if hw.torch_usable and not all(versions[p] for p in ("gptqmodel", "optimum", "accelerate")):
        install.append({"for": "AWQ/GPTQ-quantized safetensors models", "command": QUANT_INSTALL})
    if not llama.get("installed"):
        install.append({"for": "GGUF models", "command": "pip install llama-cpp-python"})
    return {
        "system": {
            "os": platform.platform(),
            "python": sys.version.split()[0],
            "cpu": _cpu_name(),
            "cores": {"physical": physical_cores(), "logical": os.cpu_count()},
            "memory": {"total_bytes": total_memory(), "available_bytes": available_memory()},
        },
        "gpu": {
            "cuda_devices": [
                {"index": g.index, "name": g.name, "total_bytes": g.total_bytes, "free_bytes": g.free_bytes}
                for g in hw.gpus
            ],
            "cuda_available_to_torch": hw.cuda_available,
            "torch_cuda_build": hw.torch_cuda,
            "metal": hw.metal,
            "notes": list(hw.notes),
        },
        "packages": versions,
        "llama_cpp": {k: v for k, v in llama.items() if k != "system_info"},
        "backends": backends,
        "install": install,
        "engines": engines_report(hw, engine_model),
    }


def render(report: dict[str, Any]) -> str:
    from .sizes import human_size

    s, g = report["system"], report["gpu"]
    lines = [
        "system",
        f"  os        {s['os']} · python {s['python']}",
        f"  cpu       {s['cpu']} · {s['cores']['physical']} physical cores, {s['cores']['logical']} logical",
        f"  memory    {human_size(s['memory']['total_bytes'])} total,"
        f" {human_size(s['memory']['available_bytes'])} available",
        "gpu",
    ]
    if g["cuda_devices"]:
        for d in g["cuda_devices"]:
            lines.append(
                f"  cuda:{d['index']}    {d['name']} · {human_size(d['free_bytes'])} free"
                f" of {human_size(d['total_bytes'])}"
            )
    else:
        lines.append("  cuda      none found" + (" (torch is a CPU-only build)" if not g["torch_cuda_build"] else ""))
    lines.append(f"  metal     {'yes' if g['metal'] else 'no'}")
    lines.extend(f"  note      {n}" for n in g["notes"])
    lines.append("packages")
    for name, version in report["packages"].items():
        lines.append(f"  {name:<17} {version or 'not installed'}")
    llama = report["llama_cpp"]
    if llama.get("installed"):
        lines.append(
            f"  llama.cpp build   gpu offload {'yes' if llama.get('gpu_offload') else 'no'}"
            + (f" · {' '.join(llama['features'])}" if llama.get("features") else "")
        )
    lines.append("backends (--backend auto)")
    for b in report["backends"]:
        lines.append(f"  {b['model']:<38} → {b['backend'] or 'cannot run'}: {b['reason']}")
    e = report["engines"]
    lines.append(
        f"engines (qwen serve --engine; {e['gpus']} GPU(s)"
        + (f", {e['interconnect']}" if e["interconnect"] else "")
        + ")"
    )
    for name, version in e["installed"].items():
        lines.append(f"  {name:<17} {version or 'not installed: ' + e['install'][name]}")
    if e["command"]:
        lines.append(f"  {e['model']} would run:")
        lines.extend(f"    {line}" for line in e["command"].splitlines())
    else:
        lines.append(f"  {e['model']}: {e['reason']}")
    if report["install"]:
        lines.append("install")
        for item in report["install"]:
            lines.append(f"  {item['for']}:\n    {item['command']}")
    return "\n".join(lines)
