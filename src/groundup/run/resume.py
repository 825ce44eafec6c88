"""Continue a run from its checkpoint: the file is read once, here, and every resume rule is checked here.

    open_resume(path, changes, epochs, given)  ->  Resume(path, checkpoint, cfg)

`Resume.checkpoint` is the file's contents (read once); `Resume.cfg` the run's own settings with the
few a resumed run may change (`RESUME_MAY_CHANGE`: where the data is, how it is loaded). A setting
given with another value than the run's is refused, and so is a new number of epochs for a
one-cycle run. `run.train` and `run.fit` take the `Resume` and never open the file again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundup.data.preprocessing import Preprocessing
from groundup.run.config import RESUME_MAY_CHANGE, TrainConfig
from groundup.utils.checkpoint_file import CheckpointError, checkpoint_preprocessing, nonfinite_weights, read_checkpoint
from groundup.utils.checks import check_int

__all__ = ["Resume", "open_resume"]


@dataclass
class Resume:
    """A run to continue: its checkpoint file's path and contents, and the settings it continues with."""

    path: Path
    checkpoint: dict[str, Any]
    cfg: TrainConfig

    @property
    def start_epoch(self) -> int:
        """The first epoch still to train (the checkpoint holds the one before)."""
        return int(self.checkpoint["epoch"]) + 1

    @property
    def finished(self) -> bool:
        """True when every epoch of the run is done."""
        return self.start_epoch >= self.cfg.epochs

    @property
    def preprocessing(self) -> Preprocessing | None:
        return checkpoint_preprocessing(self.checkpoint)

    @property
    def lr_finder(self) -> dict[str, Any] | None:
        """`{"method": ...}`, how the LR finder chose when the run began with `lr="auto"` (None otherwise);
        its suggestion is the config's `lr`."""
        return (self.checkpoint.get("run") or {}).get("lr_finder")


def saved_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The run settings (`config`) stored in a checkpoint written by `groundup train`."""
    config = checkpoint.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has no run settings (it was not written by groundup "
                              f"train); continue it in Python with Learner.load")
    return config


def check_given(saved: dict[str, Any], given: dict[str, Any]) -> None:
    """A resumed run keeps its settings: a setting given with another value is an error, not ignored.

    `given` holds the settings the user named (on the command line: the flags typed, even when a
    flag's value is the default), as `TrainConfig` values. Those a resumed run may change, and
    `epochs` (checked by `open_resume`), are not checked here.
    """
    run = TrainConfig.from_dict(saved).to_dict()
    for name, value in given.items():
        if name in (*RESUME_MAY_CHANGE, "epochs"):
            continue
        if value != run.get(name):
            raise ValueError(f"--{name.replace('_', '-')} {value} differs from the resumed run's "
                             f"{name}={run.get(name)!r}; --resume continues the run with its own settings "
                             f"(leave --{name.replace('_', '-')} out)")


def open_resume(path: str | Path, changes: dict[str, Any] | None = None, epochs: int | None = None,
                given: dict[str, Any] | None = None) -> Resume:
    """Read the checkpoint `path` once and return the run to continue.

    Args:
        path: a checkpoint written by `groundup train` (its `model.pt` or `best.pt`).
        changes: new values for the settings a resumed run may change (`RESUME_MAY_CHANGE`); a None
            value keeps the run's own.
        epochs: a new number of epochs: a constant schedule can be extended; a one-cycle schedule
            cannot (ValueError saying why).
        given: the other settings the user named, checked against the run's (`check_given`).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    saved = saved_config(checkpoint, path)
    broken = nonfinite_weights(checkpoint)
    if broken:  # written by an older groundup after training diverged: nothing to continue from
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights ({len(broken)} tensors, e.g. "
                              f"{broken[0]}): training had diverged when it was saved, so it cannot be resumed; "
                              f"resume from {path.with_name('best.pt')} or an earlier copy, or start a new run "
                              f"with a lower --lr")
    if given:
        check_given(saved, given)
    changes = {k: v for k, v in (changes or {}).items() if k in RESUME_MAY_CHANGE and v is not None}
    before = TrainConfig.from_dict(saved)
    values = {**saved, **changes}
    if epochs is not None and epochs != before.epochs:
        if before.schedule != "constant":
            raise ValueError(f"--epochs {epochs} cannot change the resumed run's {before.epochs} epochs: its "
                             f"{before.schedule} schedule sets each batch's lr from the progress through all "
                             f"{before.epochs}, so the epochs done belong to that cycle (runs with --schedule "
                             f"constant can be extended); start a new run for {epochs} epochs")
        values["epochs"] = check_int("", "--epochs", epochs)
    return Resume(path, checkpoint, TrainConfig.from_dict(values))


def changes_of(cfg: TrainConfig) -> dict[str, Any]:
    """The values of `cfg` a resumed run takes over (those of `RESUME_MAY_CHANGE`)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in RESUME_MAY_CHANGE}
