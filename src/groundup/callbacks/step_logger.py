"""`StepLogger`: one CSV row per training batch (epoch, iteration, lr, loss), written in chunks."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from groundup.callbacks.core import Callback
from groundup.utils.checks import check_int
from groundup.utils.process_group import is_main_process

__all__ = ["StepLogger"]

FIELDS = ("epoch", "iteration", "lr", "loss")


class StepLogger(Callback):
    """Append a row per training batch to a CSV file: `epoch, iteration, lr, loss`.

    `iteration` counts training batches from the start of the run (`epoch * n_iter + iter`), `lr`
    is the first parameter group's learning rate for that batch, `loss` the batch's loss. Rows are
    kept (the loss as a detached tensor, so no host sync per batch) and written `every` rows at a
    time, at the end of each training pass and when `fit` ends: one sync and one file write per
    chunk, never one per batch.

    A fit that starts at epoch 0 starts the file afresh; a resumed one (`start_epoch > 0`) keeps
    the rows of the epochs before it and drops any later ones (a run killed mid-epoch may have
    written part of that epoch). In a distributed run only rank 0 writes.

    Args:
        path: the CSV file (`steps.csv` in a run folder).
        every: rows kept at most before they are written.

    Example:
        >>> learn.fit(3, cbs=[StepLogger("steps.csv")])
    """

    order = 20  # after the schedules (10) have set this batch's lr, as Recorder

    def __init__(self, path: str | os.PathLike, every: int = 500) -> None:
        self.path = Path(path)
        self.every = check_int("StepLogger", "every", every)
        self._rows: list[tuple[int, int, float]] = []
        self._losses: list[torch.Tensor] = []
        self._active = False

    def before_fit(self) -> None:
        self._rows, self._losses = [], []
        self._active = is_main_process()
        if not self._active:
            return
        start = self.learn.epoch
        kept = read_steps(self.path, start) if start > 0 else []  # a resumed fit: keep the epochs before it
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(kept)

    def after_loss(self) -> None:
        learn = self.learn
        if not (self._active and learn.training):
            return
        self._losses.append(learn.loss.detach())
        self._rows.append((learn.epoch, learn.epoch * learn.n_iter + learn.iter, learn.opt.param_groups[0]["lr"]))
        if len(self._rows) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Write the rows kept so far (one host sync for their losses, one append to the file)."""
        if not self._rows:
            return
        losses = torch.stack([t.float().reshape(()) for t in self._losses]).tolist()
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerows((epoch, it, float(lr), loss) for (epoch, it, lr), loss in zip(self._rows, losses))
        self._rows, self._losses = [], []

    def after_train(self) -> None:
        self.flush()

    def after_fit(self) -> None:
        self.flush()

    def __repr__(self) -> str:
        return f"StepLogger({str(self.path)!r}, every={self.every})"


def read_steps(path: str | os.PathLike, before_epoch: int) -> list[dict[str, str]]:
    """The rows of the steps file `path` for the epochs before `before_epoch` ([] if there is no file)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) < before_epoch]
