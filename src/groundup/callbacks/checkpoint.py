"""`Checkpoint`: save the training state after every epoch, and keep the best one."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from groundup.callbacks.core import Callback
from groundup.callbacks.tracking import METRICS, is_improvement
from groundup.utils.atomic import atomic_write, remove_stale_temp_files
from groundup.utils.checkpoint_file import CheckpointError, read_checkpoint, save_checkpoint
from groundup.utils.process_group import is_main_process

__all__ = ["Checkpoint", "repair_best", "stale_best"]

log = logging.getLogger(__name__)


class Checkpoint(Callback):
    """Write a checkpoint after every epoch (or at the end of `fit`), and optionally the best one.

    Args:
        path_or_folder: a file name ending in `.pt` (the best one goes next to it as `best.pt`),
            or a folder (files `model.pt` and `best.pt` inside it).
        every_epoch: save after every epoch; if False, save once when `fit` ends.
        best_by: a column of `learn.history` ("valid_loss", "valid_acc", "train_loss", "train_acc",
            as `TrackResults` fills it) to keep `best.pt` by, or None. Losses are better lower,
            accuracies higher.
        extra: more entries for every checkpoint (e.g. `{"config": {...}}`), plain data only.

    Each save is atomic (see `groundup.utils.checkpoint_file`), so a run killed at any moment leaves the last
    finished epoch's checkpoint intact; the temporary files such a kill leaves behind are removed
    when the next `fit` starts. `model.pt` is written before `best.pt` and records which epoch is the
    best; a kill between the two leaves a `best.pt` of an older epoch, which the resumed `fit`
    finds and repairs (`repair_best`), so `model.pt`, `best.pt` and the summary always agree. A fit that stops in the middle of an epoch (an error, Ctrl-C, a
    cancel) saves nothing of that epoch: its weights are half-trained (or, after a NaN loss, broken).
    Resume with `learn.load(path)` and `learn.fit(n, start_epoch=ckpt["epoch"] + 1)`. In a
    distributed run only rank 0 writes.

    Example:
        >>> learn.fit_one_cycle(5, 0.01, cbs=[Checkpoint("runs/exp1", best_by="valid_loss")])
    """

    order = 60  # after TrackResults (50) has finished the epoch's row
    during_lr_find = False  # never save the finder's passing state over a run's checkpoint

    def __init__(self, path_or_folder: str | os.PathLike, every_epoch: bool = True,
                 best_by: str | None = "valid_loss", extra: dict | None = None) -> None:
        if best_by is not None and best_by not in METRICS:
            raise ValueError(f"Checkpoint: best_by must be one of {METRICS} or None, got {best_by!r}")
        p = Path(path_or_folder)
        self.path = p if p.suffix == ".pt" else p / "model.pt"
        self.best_path = self.path.with_name("best.pt")
        self.every_epoch, self.best_by, self.extra = every_epoch, best_by, dict(extra or {})
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._last_done: int | None = None  # the last epoch that finished in this fit
        self._mid_epoch = False  # from before_train to the end of validation: the weights are half an epoch's

    def before_fit(self) -> None:
        if self.learn.epoch == 0:  # a fresh run; a resumed one keeps the best so far (load_state_dict)
            self.best, self.best_epoch = None, None
        self._last_done, self._mid_epoch = None, False
        if is_main_process():  # what a kill during an earlier save left behind
            remove_stale_temp_files(self.path.parent, [self.path.name, self.best_path.name])
            if self.learn.epoch > 0 and self.every_epoch:
                repair_best(self.path, self.best_path, self.best_epoch)

    def before_train(self) -> None:
        self._mid_epoch = True

    def after_validate(self) -> None:
        self._mid_epoch = False  # the epoch's weights are final (a cancel in after_epoch still saves them)

    def after_epoch(self) -> None:
        self._mid_epoch = False
        self._last_done = self.learn.epoch
        improved = self._update_best()
        if not is_main_process():
            return
        if self.every_epoch:
            # model.pt first: it records which epoch is best, so a kill before best.pt is written leaves a
            # model.pt that says so, and the resumed fit (`repair_best`) copies it to best.pt.
            self._save(self.path)
            if improved:
                _copy_atomic(self.path, self.best_path)
        elif improved:
            self._save(self.best_path)
        if improved:
            log.debug("saved %s: epoch %d, the best %s so far (%.4f)", self.best_path, self.best_epoch,
                      self.best_by, self.best)

    def after_fit(self) -> None:
        # Without every_epoch: one save at the end, if any epoch finished (a cancelled first epoch saves
        # nothing) and the fit did not stop mid-epoch (an error, Ctrl-C, a cancel: the weights are not
        # the epoch's).
        if not self.every_epoch and self._last_done is not None and not self._mid_epoch and is_main_process():
            self._save(self.path)

    def _save(self, path: Path) -> None:
        save_checkpoint(self.learn, path, epoch=self._last_done, **self.extra)
        log.debug("saved %s (epoch %d)", path, self._last_done)

    def _update_best(self) -> bool:
        if self.best_by is None:
            return False
        history = self.learn.history
        if not history or history[-1].get("epoch") != self.learn.epoch:
            raise ValueError(f"Checkpoint(best_by={self.best_by!r}) reads learn.history, which has no row for "
                             f"epoch {self.learn.epoch}; add TrackResults() to the learner's callbacks (it "
                             f"fills learn.history) or pass best_by=None")
        value = history[-1].get(self.best_by)
        if is_improvement(self.best_by, value, self.best):
            self.best, self.best_epoch = float(value), int(self.learn.epoch)
            return True
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, every_epoch={self.every_epoch}, best_by={self.best_by!r})"


def _epoch_of(path: Path) -> int | None:
    """The epoch stored in the checkpoint `path`, or None when it is missing or cannot be read."""
    try:
        return int(read_checkpoint(path)["epoch"])
    except (OSError, CheckpointError, KeyError, TypeError, ValueError):
        return None


def stale_best(path: Path, best_path: Path, best_epoch: int | None) -> str:
    """Why `best_path` does not hold the best epoch `model.pt` (`path`) records and can be repaired from it
    ('' when it holds it, or when `path` is not that epoch either, so there is nothing to repair from)."""
    if best_epoch is None:
        return ""
    held = _epoch_of(best_path)
    if held == best_epoch or _epoch_of(path) != best_epoch:
        return ""
    found = ("is missing" if not best_path.exists() else "cannot be read" if held is None
             else f"holds epoch {held}")
    return f"{best_path} {found} while {path.name} records epoch {best_epoch} as the best"


def repair_best(path: Path, best_path: Path, best_epoch: int | None) -> str:
    """Copy `model.pt` to `best.pt` when `best.pt` is stale (see `stale_best`): what a kill between the two
    writes of an epoch left. Returns what was done ('' if nothing), also logged as a warning."""
    why = stale_best(path, best_path, best_epoch)
    if not why:
        return ""
    _copy_atomic(path, best_path)
    done = f"{why} (a run stopped between writing the two); copied {path.name} to {best_path.name}"
    log.warning(done)
    return done


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy `src` over `dst` atomically (see `groundup.utils.atomic`): never a half-written `dst`."""
    with atomic_write(dst, durable=True) as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out)