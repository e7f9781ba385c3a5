"""Where a torch model runs and in which precision: the user's --device, else the best there is."""

from __future__ import annotations

import torch

from ..errors import BackendUnavailable, UsageError


def pick_device(requested: str | None) -> str:
    if requested:
        device = requested.strip().lower()
        if not (device in ("cpu", "cuda", "mps") or device.startswith("cuda:") and device[5:].isdigit()):
            raise UsageError(f"--device takes cpu, cuda, cuda:N or mps, not {requested!r}", param="device")
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise BackendUnavailable(
                    f"--device {device}: torch sees no CUDA GPU (torch {torch.__version__})",
                    "qwen doctor shows what is missing; --device cpu runs (slowly) on the CPU",
                )
            index = int(device[5:]) if ":" in device else 0
            if index >= torch.cuda.device_count():
                raise UsageError(
                    f"--device {device}: there are {torch.cuda.device_count()} CUDA devices", param="device"
                )
        if device == "mps" and not torch.backends.mps.is_available():
            raise BackendUnavailable("--device mps: torch sees no Metal GPU", "--device cpu")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, quantized: bool) -> torch.dtype:
    """bf16 where the GPU supports it, else fp16; fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    if device.startswith("cuda"):
        if quantized:
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32
