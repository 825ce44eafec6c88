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

Writing is atomic (`groundup.utils.atomic`): a kill while saving leaves the previous checkpoint intact.
Reading proves the file whole: `torch.save` stores a CRC-32 of every entry (the weights included) in
its zip archive, and `read_checkpoint` checks them all before loading, so damage anywhere in the
file is refused with a message naming the file, never loaded as wrong weights.
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
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch

from groundup._version import __version__
from groundup.data.preprocessing import Preprocessing
from groundup.optim import split_by_layer_groups
from groundup.utils.atomic import atomic_write
from groundup.utils.errors import GroundupError
from groundup.utils.rng import get_rng_state, set_rng_state

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "WeightTransfer",
    "checkpoint_preprocessing",
    "get_rng_state",
    "load_body",
    "load_checkpoint",
    "nonfinite_weights",
    "read_checkpoint",
    "read_weights",
    "save_checkpoint",
    "set_rng_state",
    "weights_mismatch",
]

FORMAT = "groundup-checkpoint"
VERSION = 2  # 2: preprocessing, history and arch; version 1 files still load
_RESERVED = {"format", "version", "model", "arch", "opt", "epoch", "n_epochs", "lr", "rng", "preprocessing",
             "history", "vocab", "stats", "callbacks", "versions"}


class CheckpointError(GroundupError, ValueError):
    """A checkpoint file that cannot be used: truncated, not a checkpoint, or made for another model."""


# -- files ----------------------------------------------------------------------------------------------
# torch.save writes a zip archive; before torch 1.6 it wrote a pickle that starts with this magic number.
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_OTHER_COPY = "use another copy (best.pt beside it, or a copy made before)"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file safely (`weights_only=True`, tensors on the CPU) and check its format.

    Each way a file can fail has its own message: empty, not a torch file, truncated, damaged,
    holding objects that safe loading refuses (code: it may be malicious, and is never run),
    not a groundup checkpoint, or a newer format version.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file cannot be used; the message says why and what to do.
    """
    path = Path(path)
    if path.is_dir():
        inside = [p.name for p in (path / "model.pt", path / "best.pt") if p.is_file()]
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file; give the file"
                              + (f" inside it: {path / inside[0]}" if inside else " (a run folder holds model.pt)"))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    _check_container(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e)
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            # Not chained (`from None`): torch's own text would suggest loading it unsafely.
            raise CheckpointError(_refused(path, text)) from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"cannot read checkpoint {path}: the file is damaged (torch: {_clip(first)}); "
                              f"{_OTHER_COPY}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a groundup checkpoint (no format={FORMAT!r} entry); "
                              f"was it written by torch.save directly? load it with torch.load")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt['version']}, this groundup "
                              f"({__version__}) reads up to {VERSION}; upgrade groundup")
    return ckpt


def _check_container(path: Path) -> None:
    """Tell an empty, foreign or truncated file apart before torch reads it (torch's errors do not)."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes): its write or copy was "
                              f"cut off; {_OTHER_COPY}")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head.startswith(_LEGACY_MAGIC):
        return
    if not head.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"cannot read checkpoint {path}: it is not a torch file (it starts with {head[:8]!r}; "
                              f"torch.save writes a zip archive, starting with {_ZIP_MAGIC!r}): check the path")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated ({size:,} bytes, and the end of "
                              f"its zip archive is missing): its write or copy was cut off; {_OTHER_COPY}")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        raise CheckpointError(f"cannot read checkpoint {path}: it is a zip archive but not a torch file (no data.pkl "
                              f"inside; it holds {', '.join(names[:3]) or 'nothing'}"
                              f"{' ...' if len(names) > 3 else ''}): check the path")
    damaged = _damaged_entry(path)
    if damaged:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is damaged ({damaged}): its bytes changed "
                              f"after it was written (a failing disk, a bad copy); {_OTHER_COPY}")


def _damaged_entry(path: Path) -> str:
    """Why the zip archive at `path` is not whole ('' if it is): every entry's bytes are checked against the
    CRC-32 that `torch.save` stored beside them, so damage inside the weights is found, not only truncation.

    Reading the whole file costs about as much as `torch.load` itself reads (a 4 MB file: 3 ms).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every entry; the first whose CRC-32 does not match, or None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        return f"its zip archive cannot be read: {_clip(str(e) or type(e).__name__)}"
    return f"its entry {bad} fails its CRC-32 check" if bad else ""


def _refused(path: Path, text: str) -> str:
    """The message for a checkpoint holding objects that `weights_only` loading will not create."""
    found = re.search(r"GLOBAL ([\w.]+)", text)
    what = f" (it asks for {found.group(1)})" if found else ""
    return (f"cannot read checkpoint {path}: it holds objects that safe loading refuses to create{what}; a "
            f"checkpoint that runs code when loaded may be malicious, so groundup will not load it. Use a "
            f"checkpoint written by groundup (Learner.save, groundup train) that you trust")


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def nonfinite_weights(ckpt: dict[str, Any]) -> list[str]:
    """The names of the checkpoint's floating-point weights that hold NaN or infinity (training had diverged)."""
    model = ckpt.get("model") or {}
    return [k for k, t in model.items() if isinstance(t, torch.Tensor) and t.is_floating_point()
            and not torch.isfinite(t).all()]


def weights_mismatch(model_state: dict[str, Any], saved: dict[str, Any]) -> str:
    """How the saved weights differ from the model's: missing and unexpected names, and other shapes (a summary)."""
    missing = [k for k in model_state if k not in saved]
    unexpected = [k for k in saved if k not in model_state]
    shapes = [k for k in model_state if k in saved and hasattr(saved[k], "shape")
              and tuple(saved[k].shape) != tuple(model_state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's weights are not in it (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"it holds {len(unexpected)} the model has no place for (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} have another shape (e.g. {k}: {tuple(saved[k].shape)} saved, "
                     f"{tuple(model_state[k].shape)} in the model)")
    return "; ".join(parts)


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """A groundup checkpoint (`read_checkpoint`), or a bare state dict saved with `torch.save(model.state_dict())`
    (torchvision's `resnet18-*.pth`) as `{"model": state_dict}` (no arch, no preprocessing).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is neither (damaged, unsafe, or something else than tensors by name).
    """
    try:
        return read_checkpoint(path)
    except CheckpointError:
        try:  # read_checkpoint has checked the container; is it a plain {name: tensor} dict?
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            obj = None
        if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in obj.items()):
            return {"model": obj}
        raise


class WeightTransfer(NamedTuple):
    """What `load_body` did: the names of the tensors it kept (loaded), dropped (saved, not used) and made (new)."""

    kept: list[str]
    dropped: list[str]
    made: list[str]

    def __str__(self) -> str:
        def names(keys: list[str]) -> str:
            return f" ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})" if keys else ""
        return (f"kept {len(self.kept)} tensors of the body, dropped {len(self.dropped)}{names(self.dropped)}, "
                f"made {len(self.made)} new{names(self.made)}")


def load_body(model, saved: dict[str, Any], head: list[torch.Tensor], source: Any = "the state dict") -> WeightTransfer:
    """Load every tensor of `saved` into `model` except the head's (`head`: its parameters), which are new.

    The head keeps the model's own initialization, except its output layer (the layer of its last
    parameter), which starts at zero, as Big Transfer's fine-tuning does: every class starts equally
    likely (the loss at ln(classes)) and the body's features are not met with random logits.
    Measured with `benchmarks/bench_transfer.py` (fine_tune(5) on 476 images of five new classes,
    fastai's base_lr 2e-3, 3 seeds): 0.524 ± 0.003 valid accuracy against 0.417 ± 0.096 with a
    randomly initialized output layer, whose first loss was 2.7 against ln 5 = 1.6.

    The body must fit exactly: every body tensor of the model in `saved`, with its shape, else a
    `CheckpointError` naming the first that differs (another architecture, most likely).
    """
    names = {id(p): name for name, p in model.named_parameters()}
    head_names = {names[id(p)] for p in head if id(p) in names}
    own = model.state_dict()
    kept, made = [], []
    for key, value in own.items():
        if key in head_names:
            made.append(key)
            continue
        if key not in saved:
            raise CheckpointError(f"{source} does not fit this model's body: it has no {key!r} (first missing of "
                                  f"{sum(k not in saved for k in own if k not in head_names)}); was it saved for "
                                  f"another architecture?")
        if tuple(saved[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source} does not fit this model's body: {key!r} has shape "
                                  f"{tuple(saved[key].shape)} there and {tuple(value.shape)} here; was it saved for "
                                  f"another architecture (or other --arch settings)?")
        kept.append(key)
    state = {**{k: saved[k] for k in kept}, **{k: own[k] for k in made}}
    if made:  # the output layer: the module of the head's last parameter
        out_layer = made[-1].rpartition(".")[0]
        state.update({k: torch.zeros_like(own[k]) for k in made if k.rpartition(".")[0] == out_layer})
    model.load_state_dict(state)
    return WeightTransfer(kept, [k for k in saved if k not in kept], made)


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
    with atomic_write(path, durable=True) as f:  # fsync'ed: a checkpoint survives a power cut
        torch.save(ckpt, f)
    return Path(path)


def load_checkpoint(learn, path: str | os.PathLike, with_opt: bool = True,
                    checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Restore a checkpoint written by `save_checkpoint` into `learn`; return the checkpoint dict.

    Restores the model's weights, the optimizer state (when `with_opt`; the optimizer is created
    from `learn.opt_func` first if the learner has none yet), `learn.lr`, the RNG states and the
    state of each callback of `learn` that has `load_state_dict` and was saved. Continue the run
    with `learn.fit(n_epochs, start_epoch=ckpt["epoch"] + 1)`.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated or foreign file, or weights that do not fit `learn.model`.
    """
    ckpt = read_checkpoint(path) if checkpoint is None else checkpoint  # `checkpoint`: read already
    model = learn.unwrapped_model
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, KeyError) as e:
        arch = (ckpt.get("config") or {}).get("arch") if isinstance(ckpt.get("config"), dict) else None
        if arch is None and isinstance(ckpt.get("arch"), dict):
            arch = ckpt["arch"].get("name")
        saved = f" (it was saved for arch {arch!r})" if arch else ""
        how = weights_mismatch(model.state_dict(), ckpt["model"]) or _clip(str(e).strip() or type(e).__name__)
        raise CheckpointError(f"checkpoint {path} does not fit this model{saved}: {how}; build the model it was "
                              f"saved for to load it") from e
    learn.lr = ckpt.get("lr", learn.lr)
    if with_opt and ckpt.get("opt") is not None:
        if learn.opt is None:
            learn.opt = learn.opt_func(list(learn.model.parameters()), learn.lr)
        if any("layer_group" in g for g in ckpt["opt"].get("param_groups", ())):  # saved with discriminative lrs
            split_by_layer_groups(learn.opt, learn.layer_groups())
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
