"""`TrackResults`: per-epoch loss and accuracy of the training and validation passes."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import torch

from groundup.distributed import all_reduce_sum, comm_device, is_distributed, is_main_process
from groundup.learner import Callback
from groundup.metrics import accuracy

COLUMNS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "seconds")


class TrackResults(Callback):
    """Keep running sums of loss and accuracy on the device; print one table row per epoch.

    Sums are weighted by batch size (so a smaller last batch counts for what it is) and turned
    into numbers once per pass, never per batch. In a distributed run (see `DistributedCB`) the
    sums of all ranks are added up first (one all-reduce per pass), so every rank records the
    metrics of the whole data set, and only rank 0 prints.

    Args:
        print_table: print the header and a row per epoch (to `file`).
        file: where to print (default stdout).
        metric: `metric(preds, yb) -> 0-d tensor` (default `accuracy`); set to None for
            non-classification losses.

    After `fit`: `history` is a list of dicts with keys `COLUMNS`; `table()` renders it.
    """

    order = 50

    def __init__(self, print_table: bool = True, file: TextIO | None = None, metric=accuracy):
        self.print_table, self.file, self.metric = print_table, file, metric
        self.history: list[dict] = []

    def before_fit(self) -> None:
        self.history = [] if self.learn.epoch == 0 else self.history
        self._printed_header = False

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
            if self.metric is not None:
                m = self.metric(learn.preds.detach(), yb).float() * n
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
        return loss_sum, (metric_sum if self.metric is not None else None), round(count)

    def after_train(self) -> None:
        self._finish("train")

    def after_validate(self) -> None:
        self._finish("valid")

    def after_epoch(self) -> None:
        self._row["seconds"] = time.perf_counter() - self._start
        self.history.append(self._row)
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
        cells = []
        for c in COLUMNS:
            v = row.get(c)
            cells.append(f"{'-':>10}" if v is None else f"{v:>10d}" if c == "epoch" else
                         f"{v:>10.1f}" if c == "seconds" else f"{v:>10.4f}")
        return "  ".join(cells)

    def table(self) -> str:
        """The history as the printed table."""
        return "\n".join([self.format_row(None), *(self.format_row(r) for r in self.history)])

    def state_dict(self) -> dict:
        return {"history": [dict(r) for r in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = [dict(r) for r in state["history"]]
