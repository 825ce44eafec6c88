"""Which device to train on: `--device auto|cpu|cuda|cuda:N`, checked against what this machine has.

    >>> resolve_device("auto")      # CUDA when there is one (under torchrun: this process's GPU), else CPU
    device(type='cpu')
    >>> resolve_device("cuda:1")    # on a machine without it: ValueError listing what is available
"""

from __future__ import annotations

import re

import torch

from groundup.utils.process_group import local_device

__all__ = ["available_devices", "check_device_name", "resolve_device"]

_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def available_devices() -> list[str]:
    """The `--device` values this machine can use: auto, cpu, and cuda, cuda:0, ... (and mps) where present."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def check_device_name(name: str, flag: str = "--device") -> str:
    """`name` if it is spelled like a device (auto, cpu, cuda, cuda:N, mps), else ValueError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{flag} {name!r} is not a device; use auto, cpu, cuda or cuda:N "
                         f"(available here: {', '.join(available_devices())})")
    return name


def resolve_device(name: str | torch.device | None = "auto", flag: str = "--device") -> torch.device:
    """The `torch.device` for `name`; "auto" (or None) picks CUDA when available, else CPU.

    Raises:
        ValueError: a name that is no device, or a device this machine does not have; the message
            lists the ones it has, e.g. `--device cuda is not available on this machine; available: auto, cpu`.
    """
    if name is None or name == "auto":
        return local_device()
    if isinstance(name, torch.device):
        name = str(name)
    check_device_name(name, flag)
    available = available_devices()
    if name not in available:
        raise ValueError(f"{flag} {name} is not available on this machine; available: {', '.join(available)}")
    return torch.device(name)
