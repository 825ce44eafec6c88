"""What machine a run ran on: the CPU model and its cores, the GPU's name (for summaries and reports)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

__all__ = ["cpu_model", "describe_device"]


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else `platform`), e.g. 'AMD EPYC 7763 64-Core'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: str | torch.device) -> dict[str, object]:
    """Facts about `device` and the machine: `{"device", "cpu", "cpu_cores", "cpu_cores_usable", "gpu"}`.

    `gpu` is the CUDA device's name (None on the CPU); `cpu_cores_usable` counts the cores this
    process may run on (fewer than `cpu_cores` in a container or under `taskset`).
    """
    device = torch.device(device)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    if device.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device)
    return {"device": str(device), "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
            "cpu_cores_usable": usable, "gpu": gpu}
