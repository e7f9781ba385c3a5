"""What this machine offers: cores and memory. Cheap probes only; CUDA lives with the torch backend."""

from __future__ import annotations

import os


def physical_cores() -> int:
    """Physical cores we may run on: llama.cpp is fastest with one thread per physical core."""
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    physical = psutil.cpu_count(logical=False) or usable
    return max(1, min(physical, usable))


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def total_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)
