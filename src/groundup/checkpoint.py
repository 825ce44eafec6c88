"""Checkpoints: everything needed to resume a run exactly, written atomically, loaded safely.

A checkpoint is one file written with `torch.save` holding a dict of plain values (tensors,
numbers, strings, lists, dicts) and nothing else, so it loads with `torch.load(weights_only=True)`,
which refuses to run code stored in a file (a pickle can otherwise run anything). Its keys:

    format, version      "groundup-checkpoint", 2 (files of version 1 still load)
    model                the model's state_dict (parameters and buffers)
    arch                 {"name", "kwargs"} for a model built by a registered architecture, or None
    opt                  the optimizer's state_dict (momentum buffers, Adam moments, step counts), or None
    epoch                the last epoch that finished (-1: none); resume with `fit(n, start_epoch=epoch + 1)`
    n_epochs, lr         the learner's settings for the fit that was running
    rng                  RNG states: torch (CPU), cuda (one per device), numpy, python `random`
    preprocessing        the learner's `Preprocessing` as plain data (size, vocab, class names, mean,
                         std), or None: everything prediction needs to read a new image
    history              the per-epoch results (`learn.history`)
    callbacks            {callback name: its state_dict()} for callbacks that have one
    versions             groundup, torch and python versions that wrote the file
    ...                  anything passed as `**extra` (the CLI stores its run settings as `config`)

Writing is atomic (`groundup.atomic`): a kill while saving leaves the previous checkpoint intact.
Resuming is exact: schedules are functions of (epoch, iter), the DataLoader's order of (seed,
epoch), and the RNG states are restored for anything random in the model.

Example:
    >>> learn.fit_one_cycle(2, 0.01, cbs=[Checkpoint("runs/a")])   # writes runs/a/model.pt each epoch
    >>> ckpt = learn.load("runs/a/model.pt")
    >>> learn.fit(3, cbs=[OneCycle(0.01)], start_epoch=ckpt["epoch"] + 1)
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

from groundup._version import __version__
from groundup.atomic import atomic_write
from groundup.data.preprocessing import Preprocessing
from groundup.errors import GroundupError
from groundup.rng import get_rng_state, set_rng_state

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "checkpoint_preprocessing",
    "get_rng_state",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "set_rng_state",
    "write_atomic",
]

FORMAT = "groundup-checkpoint"
VERSION = 2  # 2: preprocessing, history and arch; version 1 files still load
_RESERVED = {"format", "version", "model", "arch", "opt", "epoch", "n_epochs", "lr", "rng", "preprocessing",
             "history", "vocab", "stats", "callbacks", "versions"}


class CheckpointError(GroundupError, ValueError):
    """A checkpoint file that cannot be used: truncated, not a checkpoint, or made for another model."""


# -- files ----------------------------------------------------------------------------------------------
def write_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj)` to `path` so that `path` holds either the old file or the complete new one.

    Written through `groundup.atomic.atomic_write(durable=True)`: a temporary file in the same
    folder, fsync'ed, moved over `path` with `os.replace`, then the folder fsync'ed so the rename
    itself survives a power cut.
    """
    with atomic_write(path, durable=True) as f:
        torch.save(obj, f)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file safely (`weights_only=True`, tensors on the CPU) and check its format.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is truncated, corrupt, or not a groundup checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e).strip()
        refused = re.search(r"WeightsUnpickler error: (.*)", text)
        if refused:  # a well-formed file holding something other than plain data (e.g. a class)
            raise CheckpointError(f"cannot read checkpoint {path}: it holds objects that safe loading "
                                  f"(weights_only) refuses to create: {refused.group(1)[:200]}") from e
        first = text.splitlines()[0] if text else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated, corrupt or not a "
                              f"torch file ({first[:200]})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a groundup checkpoint (no format={FORMAT!r} entry); "
                              f"was it written by torch.save directly? load it with torch.load")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt['version']}, this groundup "
                              f"({__version__}) reads up to {VERSION}; upgrade groundup")
    return ckpt


# -- learner <-> checkpoint --------------------------------------------------------------------------------
def checkpoint_preprocessing(ckpt: dict[str, Any]) -> Preprocessing | None:
    """The `Preprocessing` stored in a checkpoint (also from the separate keys of format version 1)."""
    if isinstance(ckpt.get("preprocessing"), dict):
        return Preprocessing.from_dict(ckpt["preprocessing"])
    stats = ckpt.get("stats")  # version 1: vocab, stats and the command line's config["size"]
    if not isinstance(stats, dict):
        return None
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    return Preprocessing(stats["mean"], stats["std"], size=config.get("size"), vocab=ckpt.get("vocab"))


def save_checkpoint(learn, path: str | os.PathLike, epoch: int | None = None, **extra) -> Path:
    """Write `learn`'s training state to `path` atomically (see the module docstring for the keys).

    Args:
        learn: the Learner.
        path: the file to write (its folder is created).
        epoch: the last finished epoch; default `learn.epoch` once an optimizer exists (after a
            `fit`), else -1 (nothing trained yet).
        extra: more entries to store, e.g. `config={...}`; values must be plain data (tensors,
            numbers, strings, lists, dicts) so the file still loads with `weights_only=True`.

    Returns:
        The path written.
    """
    clash = sorted(set(extra) & _RESERVED)
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {clash} are reserved for the checkpoint itself; "
                         f"rename them (reserved: {sorted(_RESERVED)})")
    if epoch is None:
        epoch = learn.epoch if learn.opt is not None else -1
    callbacks = {}
    for cb in learn.cbs:
        if callable(getattr(type(cb), "state_dict", None)):
            callbacks[cb.name] = cb.state_dict()
    model = learn.unwrapped_model
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.state_dict(),
        "arch": getattr(model, "arch_spec", None),
        "opt": learn.opt.state_dict() if learn.opt is not None else None,
        "epoch": int(epoch),
        "n_epochs": int(learn.n_epochs),
        "lr": float(learn.lr),
        "rng": get_rng_state(),
        "preprocessing": None if learn.preprocessing is None else learn.preprocessing.to_dict(),
        "history": [dict(row) for row in learn.history],
        "callbacks": callbacks,
        "versions": {"groundup": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
        **extra,
    }
    return write_atomic(ckpt, path)


def load_checkpoint(learn, path: str | os.PathLike, with_opt: bool = True) -> dict[str, Any]:
    """Restore a checkpoint written by `save_checkpoint` into `learn`; return the checkpoint dict.

    Restores the model's weights, the optimizer state (when `with_opt`; the optimizer is created
    from `learn.opt_func` first if the learner has none yet), `learn.lr`, the RNG states and the
    state of each callback of `learn` that has `load_state_dict` and was saved. Continue the run
    with `learn.fit(n_epochs, start_epoch=ckpt["epoch"] + 1)`.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated or foreign file, or weights that do not fit `learn.model`.
    """
    ckpt = read_checkpoint(path)
    model = learn.unwrapped_model
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, KeyError) as e:
        arch = (ckpt.get("config") or {}).get("arch") if isinstance(ckpt.get("config"), dict) else None
        saved = f" (it was saved for arch {arch!r})" if arch else ""
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} does not fit this model{saved}: {first[:300]}") from e
    learn.lr = ckpt.get("lr", learn.lr)
    if with_opt and ckpt.get("opt") is not None:
        if learn.opt is None:
            learn.opt = learn.opt_func(list(learn.model.parameters()), learn.lr)
        try:
            learn.opt.load_state_dict(ckpt["opt"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {path}: the optimizer state does not fit "
                                  f"{type(learn.opt).__name__} for this model ({e}); "
                                  f"load with with_opt=False to take only the weights") from e
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    if "history" in ckpt:
        learn.history = [dict(row) for row in ckpt["history"]]
    preprocessing = checkpoint_preprocessing(ckpt)
    if preprocessing is not None:
        learn.preprocessing = preprocessing
    saved_cbs = ckpt.get("callbacks") or {}
    for cb in learn.cbs:
        if cb.name in saved_cbs and callable(getattr(type(cb), "load_state_dict", None)):
            cb.load_state_dict(saved_cbs[cb.name])
    return ckpt
