"""`TrackResults`: per-epoch loss and accuracy of the training and validation passes."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TextIO

import torch

from groundup.callbacks.core import Callback
from groundup.metrics import task_metric
from groundup.utils.process_group import all_reduce_sum, comm_device, is_distributed, is_main_process

COLUMNS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "seconds")
METRICS = ("train_loss", "train_acc", "valid_loss", "valid_acc")  # the columns a run can be judged by
RESERVED = (*COLUMNS, "lr", "data_seconds")  # the keys of a history row that are no metric of `Learner(metrics=...)`


def metric_name(fn: Callable) -> str:
    """The column a metric function fills: its `__name__` (a `functools.partial`: its function's)."""
    return getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None) or type(fn).__name__


def check_metrics(metrics) -> list[Callable] | None:
    """`Learner(metrics=...)` checked: None (the default accuracy), or a list of functions, one column each.

    One function alone is taken as a list of one. Each must be callable, and the names (`metric_name`)
    distinct and none a column the table already has (`RESERVED`).
    """
    if metrics is None:
        return None
    if callable(metrics):
        metrics = [metrics]
    elif isinstance(metrics, (str, bytes)) or not isinstance(metrics, Iterable):
        metrics = [metrics]  # named below
    metrics = list(metrics)
    for fn in metrics:
        if not callable(fn):
            raise TypeError(f"Learner: metrics must be functions f(preds, targets) -> tensor; got {fn!r} "
                            f"({type(fn).__name__}); e.g. metrics=[accuracy] with accuracy from groundup.metrics")
    seen: set[str] = set()
    for fn in metrics:
        name = metric_name(fn)
        if name in seen:
            raise ValueError(f"Learner: two metrics are named {name!r}; each names a column, so give each function "
                             f"a name of its own (a def, or functools.update_wrapper on a partial)")
        if name in RESERVED:
            raise ValueError(f"Learner: metric {name!r} has the name of a column of the table ({', '.join(RESERVED)}); "
                             f"rename the function")
        seen.add(name)
    return metrics


def table_columns(history: Sequence[Mapping]) -> tuple[str, ...]:
    """The results table's columns for `history` (the printed table, `metrics.csv` and the report).

    `COLUMNS` by default; with the metrics of `Learner(metrics=...)` (keys a row has beyond `RESERVED`):
    epoch, train_loss, valid_loss (and train_acc/valid_acc where recorded), the metrics in order, seconds.
    """
    extra = list(dict.fromkeys(k for row in history for k in row if k not in RESERVED))
    if not extra:
        return COLUMNS
    present = {k for row in history for k in row}
    kept = [c for c in COLUMNS[:-1] if c not in ("train_acc", "valid_acc") or c in present]
    return (*kept, *extra, "seconds")


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
    """Keep running sums of loss and metrics on the device; print one table row per epoch.

    Sums are weighted by batch size (so a smaller last batch counts for what it is) and turned
    into numbers once per pass, never per batch. In a distributed run (see `DistributedTraining`) the
    sums of all ranks are added up first (one all-reduce per pass), so every rank records the
    metrics of the whole data set, and only rank 0 prints.

    Args:
        print_table: print the header and a row per epoch (to `file`).
        file: where to print (default stdout).
        metric: `metric(preds, yb) -> 0-d tensor`, recorded on both passes as `train_acc`/`valid_acc`;
            "auto" (default): the learner's `metrics` when it has some (below), else `accuracy`, or for a
            multi-label learner (`learn.preprocessing.multi_label`) `accuracy_multi` at its threshold
            (`task_metric`); set to None for non-classification losses.

    With `Learner(..., metrics=[accuracy, f])` (and `metric="auto"`) each of those functions is
    recorded on the validation pass instead, as fastai does: a column named after the function
    (`accuracy`, `f`), its batch values averaged weighted by batch size (exact for a per-item mean
    such as accuracy; for a score that is no mean, such as an F1, the average of the batches' scores).

    Each epoch's row (a dict with keys `COLUMNS` (or those of `table_columns`), `lr`: the learning rate of
    the first parameter group at the end of the epoch, and `data_seconds`: the part of `seconds` the loop
    spent waiting for batches, `Learner.data_seconds`) is appended to `learn.history`, which the Learner
    owns (and checkpoints save): other callbacks and the code after `fit` read it there. `table()`
    renders it.
    """

    order = 50
    during_lr_find = False  # the LR finder's batches are no part of the results table

    def __init__(self, print_table: bool = True, file: TextIO | None = None, metric="auto"):
        self.print_table, self.file, self.metric = print_table, file, metric
        # (function, its column in the training pass or None, its column in the validation pass)
        self._metrics: list[tuple[Callable, str | None, str]] = [] if metric in ("auto", None) else \
            [(metric, "train_acc", "valid_acc")]  # "auto" is chosen in before_fit
        self._columns: tuple[str, ...] = COLUMNS

    @property
    def history(self) -> list[dict]:
        """The learner's results so far (`learn.history`); empty before the callback joins a learner."""
        return self.learn.history if self.learn is not None else []

    def before_fit(self) -> None:
        learn = self.learn
        if learn.epoch == 0:  # a fresh run; a resumed one appends to the history it loaded
            learn.history = []
        self._printed_header = False
        self._columns = COLUMNS
        if self.metric != "auto":
            return
        chosen = getattr(learn, "metrics", None)
        if chosen is not None:  # Learner(metrics=[...]): validation columns named after the functions
            self._metrics = [(fn, None, metric_name(fn)) for fn in chosen]
            self._columns = ("epoch", "train_loss", "valid_loss", *(c for _, _, c in self._metrics), "seconds")
        else:
            pre = learn.preprocessing
            fn = task_metric(pre is not None and pre.multi_label, pre.threshold if pre is not None else 0.5)
            self._metrics = [(fn, "train_acc", "valid_acc")]

    def before_epoch(self) -> None:
        self._row = {"epoch": self.learn.epoch}
        self._start = time.perf_counter()

    def _reset(self) -> None:
        self._loss_sum = None
        self._count = 0
        column = 1 if self.learn.training else 2
        self._active = [(m[0], m[column]) for m in self._metrics if m[column] is not None]  # (function, column)
        self._sums: list[torch.Tensor | None] = [None] * len(self._active)

    before_train = before_validate = _reset

    def after_loss(self) -> None:
        learn = self.learn
        yb = learn.batch[1]
        n = len(yb)
        with torch.no_grad():
            loss = learn.loss.detach().float() * n
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            preds = learn.preds.detach()
            for k, (fn, _) in enumerate(self._active):
                m = torch.as_tensor(fn(preds, yb)).detach().float() * n
                self._sums[k] = m if self._sums[k] is None else self._sums[k] + m
        self._count += n

    def _finish(self, prefix: str) -> None:
        if is_distributed():
            loss_sum, sums, count = self._add_up_ranks()
        else:
            loss_sum, sums, count = self._loss_sum, self._sums, self._count
        if count:
            self._row[f"{prefix}_loss"] = float(loss_sum) / count  # one sync per pass (and per metric)
            for (_, column), total in zip(self._active, sums):
                if total is not None:
                    self._row[column] = float(total) / count
        # A pass cancelled before its before_* event reached this callback (`ValidateEvery`) counts nothing:
        # never the sums of the pass before.
        self._loss_sum, self._count, self._sums = None, 0, [None] * len(self._active)

    def _add_up_ranks(self) -> tuple[float, list[float], int]:
        # One collective per pass, [loss_sum, count, *metric_sums] stacked. Every rank takes part,
        # even one that saw no batch, or the others would wait for it.
        device = self._loss_sum.device if self._loss_sum is not None else comm_device()
        zero = torch.zeros((), device=device)
        local = torch.stack([zero if self._loss_sum is None else self._loss_sum.float(),
                             torch.tensor(float(self._count), device=device),
                             *(zero if m is None else m.float().to(device) for m in self._sums)])
        loss_sum, count, *sums = all_reduce_sum([local])[0].tolist()
        return loss_sum, sums, round(count)

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
                print(self.format_row(None, self._columns), file=out)
                self._printed_header = True
            print(self.format_row(self._row, self._columns), file=out, flush=True)

    @staticmethod
    def format_row(row: dict | None, columns: Sequence[str] = COLUMNS) -> str:
        """A fixed-width table line for `row` (the header when None); a column is 10 wide, or its name's width."""
        if row is None:
            return "  ".join(f"{c:>{max(10, len(c))}}" for c in columns)
        return "  ".join(f"{format_value(c, row.get(c), '-'):>{max(10, len(c))}}" for c in columns)

    def table(self) -> str:
        """The history as the printed table."""
        columns = table_columns(self.history)
        return "\n".join([self.format_row(None, columns), *(self.format_row(r, columns) for r in self.history)])

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
