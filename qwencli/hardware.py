"""What this machine offers: cores, memory, and the engines and GPUs a backend could use.

The probe never imports torch: it finds the package with `importlib.util.find_spec`, reads the
CUDA version torch was built with from `torch/version.py`, and asks `nvidia-smi` (or, when that is
missing, a child interpreter) about the GPUs — so `qwen list` and `--help` stay fast. Only
`llama_features()` imports llama_cpp, for `qwen doctor` and `probe_hardware(llama=True)`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from .errors import BackendUnavailable

TORCH_INSTALL = "pip install 'qwencli[torch]'"
#: llama-cpp-python with CUDA kernels (its docs' build flag); Metal is on by default on Apple silicon.
LLAMA_CUDA_INSTALL = 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'


def physical_cores() -> int:
    """Physical cores we may run on: llama.cpp is fastest with one thread per physical core."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    physical = _linux_physical_cores()
    if physical is None:
        import psutil

        physical = psutil.cpu_count(logical=False)
    return max(1, min(physical or usable, usable))


def available_memory() -> int:
    return _meminfo("MemAvailable") or _psutil_memory().available


def total_memory() -> int:
    return _meminfo("MemTotal") or _psutil_memory().total


# On Linux, from the kernel's own files, as psutil reads them: psutil's import alone is ~15 ms of
# every `qwen run` (a script running one per prompt pays it each time).
def _linux_physical_cores() -> int | None:
    cores = set()
    try:
        for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
            topology = cpu / "topology"
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
    except OSError:
        return None
    return len(cores) or None


def _meminfo(field: str) -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(field.encode() + b":"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _psutil_memory():
    import psutil

    return psutil.virtual_memory()


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class Hardware:
    torch_installed: bool = False
    transformers_installed: bool = False
    torch_version: str | None = None
    #: The CUDA version torch was built with (None: a CPU-only build).
    torch_cuda: str | None = None
    gpus: tuple[GPU, ...] = ()
    #: Does the llama-cpp-python build offload layers to a GPU (CUDA/Metal/Vulkan)? None: not asked.
    llama_gpu_offload: bool | None = None
    metal: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def cuda_available(self) -> bool:
        return self.torch_cuda is not None and bool(self.gpus)

    @property
    def torch_usable(self) -> bool:
        return self.torch_installed and self.transformers_installed

    @property
    def free_gpu_bytes(self) -> int:
        return max((g.free_bytes for g in self.gpus), default=0)

    def as_json(self) -> dict:
        out = asdict(self)
        out["cuda_available"] = self.cuda_available
        return out


def require_torch() -> None:
    """Raise the install hint when torch or transformers is missing (without importing them)."""
    missing = [m for m in ("torch", "transformers") if find_spec(m) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise BackendUnavailable(
            f"the torch backend needs {' and '.join(missing)}, which {verb} not installed", TORCH_INSTALL
        )


# -- the probe ----------------------------------------------------------------------------------


def _torch_build() -> tuple[str | None, str | None]:
    """(torch version, CUDA version it was built with), read from torch/version.py without importing torch."""
    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None, None
    version = re.search(r"^__version__\s*(?::\s*str)?\s*=\s*['\"]([^'\"]+)", text, re.M)
    cuda = re.search(r"^cuda\s*(?::\s*[\w\[\]]+)?\s*=\s*['\"]([^'\"]+)", text, re.M)
    return (version[1] if version else None), (cuda[1] if cuda else None)


def nvidia_present() -> bool:
    return (
        os.path.exists("/proc/driver/nvidia/version")
        or os.path.exists("/dev/nvidia0")
        or bool(shutil.which("nvidia-smi"))
    )


def _gpus_from_nvidia_smi() -> tuple[GPU, ...] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return ()
    gpus = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            try:
                gpus.append(GPU(int(parts[0]), parts[1], int(float(parts[2])) << 20, int(float(parts[3])) << 20))
            except ValueError:
                continue
    return tuple(gpus)


_TORCH_PROBE = """
import json, torch
gpus = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        gpus.append([i, torch.cuda.get_device_name(i), total, free])
print(json.dumps(gpus))
"""


def _gpus_from_torch() -> tuple[GPU, ...]:
    """Ask torch in a child process, so this process never pays for importing it (or initialising CUDA)."""
    try:
        out = subprocess.run([sys.executable, "-c", _TORCH_PROBE], capture_output=True, text=True, timeout=120)
        rows = json.loads(out.stdout.strip().splitlines()[-1])
        return tuple(GPU(int(i), str(n), int(t), int(f)) for i, n, t, f in rows)
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError, TypeError):
        return ()


def llama_features() -> dict:
    """llama-cpp-python's version and build features (imports llama_cpp: for `qwen doctor`)."""
    if find_spec("llama_cpp") is None:
        return {"installed": False}
    import llama_cpp

    info: dict = {"installed": True, "version": getattr(llama_cpp, "__version__", None)}
    try:
        info["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
        info["mmap"] = bool(llama_cpp.llama_supports_mmap())
        info["mlock"] = bool(llama_cpp.llama_supports_mlock())
    except Exception as exc:  # an old or odd build: report, do not fail
        info["error"] = str(exc)
    try:
        system = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
        info["system_info"] = system.strip()
        flags = dict(re.findall(r"(\w+)\s*=\s*(\w+)", system))
        info["features"] = sorted(k for k, v in flags.items() if v == "1")
    except Exception:
        pass
    try:
        from llama_cpp import llama_cpp as lib

        # llama-cpp-python does not bind these (0.3.x): AttributeError, caught below, until it does.
        devices = []
        for i in range(lib.ggml_backend_dev_count()):  # type: ignore[attr-defined]
            dev = lib.ggml_backend_dev_get(i)  # type: ignore[attr-defined]
            devices.append(lib.ggml_backend_dev_name(dev).decode())  # type: ignore[attr-defined]
        info["devices"] = devices
    except Exception:
        pass
    return info


def probe_hardware(*, llama: bool = False) -> Hardware:
    """This machine, as the routing policy (`models.backend_route.choose`) needs it. `llama=True`
    also asks the llama-cpp-python build about GPU offload (imports llama_cpp, ~0.2 s)."""
    return _probe(llama)


@lru_cache(maxsize=2)
def _probe(llama: bool) -> Hardware:
    torch_installed = find_spec("torch") is not None
    version, cuda = _torch_build() if torch_installed else (None, None)
    notes: list[str] = []
    gpus: tuple[GPU, ...] = ()
    if torch_installed and cuda is not None and nvidia_present():
        found = _gpus_from_nvidia_smi()
        gpus = found if found is not None else _gpus_from_torch()
    elif torch_installed and cuda is None and nvidia_present():
        notes.append("an NVIDIA driver is present but torch is a CPU-only build")
    offload = None
    if llama:
        offload = llama_features().get("gpu_offload")
    return Hardware(
        torch_installed=torch_installed,
        transformers_installed=find_spec("transformers") is not None,
        torch_version=version,
        torch_cuda=cuda,
        gpus=gpus,
        llama_gpu_offload=offload,
        metal=platform.system() == "Darwin" and platform.machine() == "arm64",
        notes=tuple(notes),
    )
