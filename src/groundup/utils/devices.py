"""Which device to run on: the ONE check of a device name and the ONE default-device rule.

Every subcommand's `--device`, `SetupLearnerCB(device=)`, `Predictor(device=)` and
`Interpretation.from_checkpoint(device=)` go through `resolve_device`, so a name means the same
everywhere and a device this machine lacks is the same one-line error everywhere:

    >>> resolve_device("auto")      # GROUNDUP_DEVICE if set; else CUDA when there is one
    device(type='cpu')              # (under torchrun: this process's GPU, cuda:LOCAL_RANK), else the CPU
    >>> resolve_device("cuda:7")    # on a machine without it: ValueError listing what is available

The names: `auto`, `cpu`, `cuda` (under torchrun: `cuda:LOCAL_RANK`, see
`groundup.utils.process_group.rank_device`), `cuda:N` and `mps`. The environment variable
`GROUNDUP_DEVICE` (same names) changes what `auto` means: the test suite sets it to `cpu`, so that
it trains on the CPU on any machine.
"""

from __future__ import annotations

import os
import re

import torch

from groundup.utils.process_group import get_local_rank, launched_by_torchrun, local_world_size, rank_device

__all__ = ["DEVICE_ENV", "available_devices", "check_device_name", "resolve_device"]

DEVICE_ENV = "GROUNDUP_DEVICE"  # what `auto` means, when set (the test suite pins it to "cpu")
_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def available_devices() -> list[str]:
    """The device names this machine can use: auto, cpu, and cuda, cuda:0, ... (and mps) where present."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def check_device_name(name: str, flag: str = "--device") -> str:
    """`name` if it is spelled like a device (auto, cpu, cuda, cuda:N, mps), else ValueError.

    Only the spelling: whether this machine has the device is `resolve_device`'s question.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        hint = " (a GPU is 'cuda')" if isinstance(name, str) and name.lower() in ("gpu", "nvidia") else ""
        raise ValueError(f"{flag} {name!r} is not a device{hint}; use {_CHOICES} "
                         f"(available here: {', '.join(available_devices())})")
    return name


def _missing(name: str, flag: str) -> str:
    available = ", ".join(available_devices())
    if name.startswith("cuda") and not torch.cuda.is_available():
        why = ("this torch build has no CUDA support" if torch.version.cuda is None
               else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
        return f"{flag} {name} is not available on this machine ({why}); available: {available}"
    return f"{flag} {name} is not available on this machine; available: {available}"


def resolve_device(name: str | torch.device | None = "auto", flag: str = "--device") -> torch.device:
    """The `torch.device` for `name`, checked against this machine; "auto" (or None) is the default device.

    The default device: `$GROUNDUP_DEVICE` when set, else CUDA when available (under torchrun
    each process's own GPU, `cuda:LOCAL_RANK`), else the CPU. Under torchrun, `cuda` also means
    `cuda:LOCAL_RANK` (see `groundup.utils.process_group.rank_device`).

    Args:
        name: a device name (see the module docstring) or a `torch.device`.
        flag: how the message names the value, e.g. "--device" or "Predictor: device".

    Raises:
        ValueError: a name that is no device, or a device this machine does not have, in one line that
            lists the ones it has, e.g. `--device cuda is not available on this machine (...); available: auto, cpu`.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name is None or name == "auto":
        pinned = os.environ.get(DEVICE_ENV, "").strip()
        if pinned and pinned != "auto":
            return resolve_device(pinned, flag=f"{DEVICE_ENV}={pinned!r}: device")
        name = "auto"
    check_device_name(name, flag)
    if name != "auto" and name not in available_devices():
        raise ValueError(_missing(name, flag))
    if name in ("cpu", "mps"):
        return torch.device(name)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    torchrun = launched_by_torchrun() or "LOCAL_RANK" in os.environ
    return rank_device(name, get_local_rank() if torchrun else None, local_world_size(), n_gpus, flag=flag)
