"""`TrackResults`: per-epoch loss and accuracy of the training and validation passes."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

import torch

from groundup.callbacks.core import Callback
from groundup.metrics import task_metric
from groundup.utils.process_group import all_reduce_sum, comm_device, is_distributed, is_main_process

COLUMNS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "seconds")
METRICS = ("train_loss", "train_acc", "valid_loss", "valid_acc")  # the columns a run can be judged by


def is_improvement(column: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether `value` beats `best` in `column` by more than `min_delta`: losses lower, accuracies higher.

    Any finite value beats `best=None`; NaN and inf never count as an improvement.
    """
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if column.endswith("loss") else value > best + min_delta


class TrackResults(Callback):
    """Keep running sums of loss and accuracy on the device; print one table row per epoch.

    Sums are weighted by batch size (so a smaller last batch counts for what it is) and turned
    into numbers once per pass, never per batch. In a distributed run (see `DistributedTraining`) the
    sums of all ranks are added up first (one all-reduce per pass), so every rank records the
    metrics of the whole data set, and only rank 0 prints.

    Args:
        print_table: print the header and a row per epoch (to `file`).
        file: where to print (default stdout).
        metric: `metric(preds, yb) -> 0-d tensor`; "auto" (default): `accuracy`, or for a
            multi-label learner (`learn.preprocessing.multi_label`) `accuracy_multi` at its threshold
            (`task_metric`); set to None for non-classification losses.

    Each epoch's row (a dict with keys `COLUMNS`, `lr`: the learning rate of the first parameter
    group at the end of the epoch, and `data_seconds`: the part of `seconds` the loop spent waiting
    for batches, `Learner.data_seconds`) is appended to `learn.history`, which the Learner owns (and
    checkpoints save): other callbacks and the code after `fit` read it there. `table()` renders it.
    """

    order = 50
    during_lr_find = False  # the LR finder's batches are no part of the results table

    def __init__(self, print_table: bool = True, file: TextIO | None = None, metric="auto"):
        self.print_table, self.file, self.metric = print_table, file, metric
        self._metric = None if metric == "auto" else metric  # "auto" is chosen in before_fit

    @property
    def history(self) -> list[dict]:
        """The learner's results so far (`learn.history`); empty before the callback joins a learner."""
        return self.learn.history if self.learn is not None else []

    def before_fit(self) -> None:
        if self.learn.epoch == 0:  # a fresh run; a resumed one appends to the history it loaded
            self.learn.history = []
        self._printed_header = False
        if self.metric == "auto":
            pre = self.learn.preprocessing
            self._metric = task_metric(pre is not None and pre.multi_label, pre.threshold if pre is not None else 0.5)

    def before_epoch(self) -> None:
        self._row = {"epoch": self.learn.epoch}
        self._start = time.perf_counter()

    def _reset(self) -> None:
        self._loss_sum = self._metric_sum = None
        self._count = 0

    before_train = before_validate = _reset

    def after_loss(self) -> None:
        learn = self.learn
        yb = learn.batch[1]
        n = len(yb)
        with torch.no_grad():
            loss = learn.loss.detach().float() * n
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            if self._metric is not None:
                m = self._metric(learn.preds.detach(), yb).float() * n
                self._metric_sum = m if self._metric_sum is None else self._metric_sum + m
        self._count += n

    def _finish(self, prefix: str) -> None:
        if is_distributed():
            loss_sum, metric_sum, count = self._add_up_ranks()
        else:
            loss_sum, metric_sum, count = self._loss_sum, self._metric_sum, self._count
        if count:
            self._row[f"{prefix}_loss"] = float(loss_sum) / count  # one sync per pass
            if metric_sum is not None:
                self._row[f"{prefix}_acc"] = float(metric_sum) / count

    def _add_up_ranks(self) -> tuple[float, float | None, int]:
        # One collective per pass, [loss_sum, metric_sum, count] stacked. Every rank takes part,
        # even one that saw no batch, or the others would wait for it.
        device = self._loss_sum.device if self._loss_sum is not None else comm_device()
        zero = torch.zeros((), device=device)
        local = torch.stack([zero if self._loss_sum is None else self._loss_sum.float(),
                             zero if self._metric_sum is None else self._metric_sum.float(),
                             torch.tensor(float(self._count), device=device)])
        loss_sum, metric_sum, count = all_reduce_sum([local])[0].tolist()
        return loss_sum, (metric_sum if self._metric is not None else None), round(count)

    def after_train(self) -> None:
        self._finish("train")

    def after_validate(self) -> None:
        self._finish("valid")

    def after_epoch(self) -> None:
        self._row["seconds"] = time.perf_counter() - self._start
        self._row["data_seconds"] = self.learn.data_seconds
        opt = self.learn.opt
        if opt is not None and opt.param_groups:
            self._row["lr"] = float(opt.param_groups[0]["lr"])
        self.learn.history.append(self._row)
        if self.print_table and is_main_process():
            out = self.file or sys.stdout
            if not self._printed_header:
                print(self.format_row(None), file=out)
                self._printed_header = True
            print(self.format_row(self._row), file=out, flush=True)

    @staticmethod
    def format_row(row: dict | None) -> str:
        """A fixed-width table line for `row` (the header when None)."""
        if row is None:
            return "  ".join(f"{c:>10}" for c in COLUMNS)
        return "  ".join(f"{format_value(c, row.get(c), '-'):>10}" for c in COLUMNS)

    def table(self) -> str:
        """The history as the printed table."""
        return "\n".join([self.format_row(None), *(self.format_row(r) for r in self.history)])

    def load_state_dict(self, state: dict) -> None:
        """Read the history from a checkpoint written before the Learner owned it (groundup 0.1)."""
        if state.get("history") and not self.learn.history:
            self.learn.history = [dict(r) for r in state["history"]]


def format_value(column: str, v, missing: str = "") -> str:
    """How a results cell reads in the table and the report: epochs as integers, seconds to 0.1, the lr to 3
    significant digits, the rest to 4 places."""
    if v is None:
        return missing
    if column == "epoch":
        return f"{v:d}"
    if column == "lr":
        return f"{v:.3g}"
    return f"{v:.1f}" if column in ("seconds", "data_seconds") else f"{v:.4f}"
