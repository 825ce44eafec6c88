"""Start a run from trained weights (`groundup train --init RUN_OR_CHECKPOINT`).

    open_init(source, arch)     read the weights once (a run folder's model.pt, a groundup checkpoint, or a
                                bare state dict such as torchvision's resnet18-*.pth) and check the arch
    apply_init(learn, init)     load them: everything when the classes are the same, else the body and a
                                new head (with a one-line note naming both vocabularies' sizes)

`fit_run` then fine-tunes as `Learner.fine_tune` does: `cfg.freeze_epochs` of one-cycle with the body
frozen (before the run's callbacks join), then the run's epochs with discriminative learning rates,
`slice(lr / 2 / LR_MULT, lr / 2)` (`init_lr`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundup.data.preprocessing import Preprocessing
from groundup.learner import Learner
from groundup.utils.checkpoint_file import (
    CheckpointError,
    WeightTransfer,
    checkpoint_preprocessing,
    load_body,
    read_weights,
)

__all__ = ["LR_MULT", "Init", "apply_init", "init_lr", "open_init"]

LR_MULT = 100  # fine_tune's lr_mult: the body's first group learns this many times slower than the head


@dataclass
class Init:
    """Weights to start from, read once: the file, its state dict, its arch and preprocessing (None if unknown)."""

    path: Path
    state: dict[str, Any]
    arch: str | None
    preprocessing: Preprocessing | None


def init_lr(lr: float) -> slice:
    """The run's learning rates after the frozen epochs: fine_tune's `slice(lr / 2 / LR_MULT, lr / 2)`."""
    return slice(lr / 2 / LR_MULT, lr / 2)


def open_init(source: str | Path, arch: str) -> Init:
    """Read `--init`: a run folder (its model.pt) or a checkpoint file; its arch must be `arch` when it says one.

    Raises:
        FileNotFoundError: no such file, or a folder without model.pt.
        CheckpointError: not a checkpoint or a state dict, or trained as another architecture.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise FileNotFoundError(f"--init {path}: the folder has no model.pt; pass a run folder or a checkpoint file")
        path = path / "model.pt"
    elif not path.exists():
        raise FileNotFoundError(f"--init {path}: no such run folder or checkpoint file")
    ckpt = read_weights(path)
    spec = ckpt.get("arch")
    saved_arch = spec.get("name") if isinstance(spec, dict) else None
    if saved_arch is not None and saved_arch != arch:
        raise CheckpointError(f"--init {path} was trained as --arch {saved_arch}, this run is --arch {arch}; pass "
                              f"--arch {saved_arch} (trained weights fit only their own architecture)")
    return Init(path, ckpt["model"], saved_arch, checkpoint_preprocessing(ckpt))


def apply_init(learn: Learner, init: Init, say: Callable[[str], None]) -> dict[str, Any]:
    """Load `init` into `learn`'s model; return facts for the summary (`from`, `kept`, `dropped`, `made`, ...).

    The same vocabulary: every tensor, strictly, the head too. Otherwise the body only, and the head
    stays as made for this data's classes. With a groundup checkpoint the run also normalizes with
    the statistics the body was trained with (its features expect them).
    """
    pre = learn.preprocessing
    old_vocab = init.preprocessing.vocab if init.preprocessing is not None else None
    model = learn.unwrapped_model
    if old_vocab is not None and old_vocab == pre.vocab:
        try:
            model.load_state_dict(init.state)
        except (RuntimeError, ValueError) as e:
            raise CheckpointError(f"--init {init.path} does not fit --arch {init.arch}: {e}") from None
        transfer = WeightTransfer(list(init.state), [], [])
        say(f"starting from {init.path}: all {len(transfer.kept)} tensors, the head too (the same "
            f"{len(pre.vocab)} classes)")
    else:
        transfer = load_body(model, init.state, learn.layer_groups()[-1], source=f"--init {init.path}")
        old = (f"{len(old_vocab)} classes" if old_vocab is not None
               else f"a head of {init.state[transfer.made[0]].shape[0]} outputs" if transfer.made and
               transfer.made[0] in init.state else "no known classes")
        say(f"new head: {init.path} has {old}, this data has {len(pre.vocab)} classes; {transfer}")
    if init.preprocessing is not None:
        learn.preprocessing = pre.with_stats(*init.preprocessing.stats)
    return {"from": str(init.path), "arch": init.arch, "classes_before": None if old_vocab is None else len(old_vocab),
            "new_head": bool(transfer.made), "kept": len(transfer.kept), "dropped": len(transfer.dropped),
            "made": len(transfer.made)}
