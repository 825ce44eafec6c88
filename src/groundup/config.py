"""`TrainConfig`: the settings of a training run, as `groundup train` takes them.

A run is defined by its config alone (plus the data): it is stored in every checkpoint as
`config`, so `groundup train --resume` continues with the same settings. The command line
(`groundup.commands.train`) fills one from its flags; `groundup.run.build_learner` turns one into
a Learner.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from groundup.checks import check_choice, check_int
from groundup.nn.models import ARCHS
from groundup.optim import SGD, Adam

__all__ = ["OPTIMIZERS", "RESUME_MAY_CHANGE", "SCHEDULES", "TrainConfig", "opt_func_for"]

SCHEDULES = ("one-cycle", "constant")
OPTIMIZERS = ("adam", "sgd")
# Settings a resumed run may change: where the data is, how it is loaded. Everything else would
# make the resumed run a different run (and no longer equal to an uninterrupted one).
RESUME_MAY_CHANGE = ("data", "num_workers", "skip_corrupt")
MAX_SEED = 2**32 - 1


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint as `config`, so `--resume` can restore it).

    Args:
        data: a folder with `train/` and `val/` subfolders, a registry name (`groundup download --list`),
            or None for the data set shipped inside the package (imagenette-mini).
        epochs: number of epochs.
        lr: the learning rate (the peak of the one-cycle schedule), or "auto" to use the LR finder's
            suggestion (replaced by the number found before training starts).
        bs: training batch size (validation uses twice as many).
        size: images are squashed to `size`×`size` pixels.
        arch: a name from `groundup.nn.models.ARCHS`.
        schedule: "one-cycle" (warm up, then anneal; momentum inverse) or "constant".
        opt: "adam" (AdamW, weight decay 0.01) or "sgd" (momentum 0.9, weight decay 1e-4).
        num_workers: data-loading processes; None: one per CPU core (at most 8).
        seed: fixes the initial weights and the shuffling: same seed, same run.
        amp: mixed precision (bfloat16 on CPU, float16 on CUDA).
        skip_corrupt: skip images that cannot be decoded (with a warning) instead of stopping.
    """

    data: str | None = None
    epochs: int = 10
    lr: float | str = 1e-2
    bs: int = 64
    size: int = 64
    arch: str = "simple_cnn"
    schedule: str = "one-cycle"
    opt: str = "adam"
    num_workers: int | None = None
    seed: int = 42
    amp: bool = False
    skip_corrupt: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (as its command-line flag)."""
        for name in ("epochs", "bs", "size"):
            check_int("", f"--{name}", getattr(self, name))
        if self.lr != "auto" and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                  or not 0 < self.lr < math.inf):
            raise ValueError(f"--lr must be a positive number or 'auto', got {self.lr!r}")
        check_choice("--arch", self.arch, sorted(ARCHS))
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_choice("--opt", self.opt, OPTIMIZERS)
        if self.num_workers is not None:
            check_int("", "--workers", self.num_workers, low=0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"--seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:  # numpy's generators take seeds in this range
            raise ValueError(f"--seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {self.seed}")

    @property
    def workers(self) -> int | None:
        """Deprecated: `num_workers`."""
        return self.num_workers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from `to_dict`'s output (also from checkpoints of groundup 0.1, which said `workers`)."""
        d = dict(d)
        if "workers" in d and "num_workers" not in d:
            d["num_workers"] = d.pop("workers")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def opt_func_for(name: str) -> Callable:
    """The optimizer factory for `--opt`: AdamW (weight decay 0.01) or SGD (momentum 0.9, weight decay 1e-4)."""
    check_choice("--opt", name, OPTIMIZERS)
    if name == "sgd":
        return functools.partial(SGD, momentum=0.9, weight_decay=1e-4)
    return functools.partial(Adam, weight_decay=1e-2)
