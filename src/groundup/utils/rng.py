"""Random number generators: seed them all at once, and save or restore all their states.

One place for the four generators a training run draws from (torch's CPU generator, CUDA's,
numpy's global one and Python's `random`), used by checkpoints (exact resume) and by the LR
finder (which puts everything back as it was). The saved state is plain data (tensors, numbers,
lists), so a checkpoint holding it still loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_state", "seed_everything", "set_deterministic", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool = True) -> None:
    """Make torch use deterministic algorithms (or allow the fastest again): the same run, the same bits.

    On the CPU groundup's runs repeat bit for bit already. On CUDA, cuDNN picks convolution
    algorithms by timing them (`cudnn.benchmark`) and some of them, like cuBLAS's split
    reductions, add in an order that changes from run to run. With `enabled`: deterministic
    cuDNN algorithms, no benchmarking, `torch.use_deterministic_algorithms` (an op with no
    deterministic version warns, naming itself, instead of failing the run), and the cuBLAS
    workspace setting CUDA >= 10.2 needs for it (`CUBLAS_WORKSPACE_CONFIG=:4096:8`, unless set).
    A process-wide setting, as torch's are.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    if enabled:
        torch.backends.cudnn.benchmark = False


def get_rng_state() -> dict[str, Any]:
    """The states of torch's CPU (and, once CUDA is in use, CUDA) generators, numpy's and Python's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda_in_use = torch.cuda.is_available() and torch.cuda.is_initialized()  # never start CUDA just for this
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda_in_use else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by `get_rng_state` (CUDA states only where the devices exist)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
