"""`EarlyStopping`: stop a fit when the monitored metric has not improved for `patience` epochs."""

from __future__ import annotations

import logging

from groundup.callbacks.core import Callback, CancelFitException
from groundup.callbacks.tracking import METRICS, is_improvement
from groundup.utils.checks import check_int, check_number

__all__ = ["EarlyStopping"]

log = logging.getLogger(__name__)


class EarlyStopping(Callback):
    """Stop fitting once `monitor` has not improved for `patience` epochs in a row.

    After each epoch it reads the epoch's row of `learn.history` (which `TrackResults` fills): a
    loss improves when it goes down, an accuracy when it goes up, by more than `min_delta`; NaN
    never improves. An epoch without a validation pass (`ValidateEvery`) does not count for a `valid_`
    metric: `patience` counts validated epochs. After `patience` epochs without an improvement it
    raises `CancelFitException`: `after_fit` runs and `fit` returns. It runs after `Checkpoint` (order
    60), so the stopped epoch is saved in `model.pt` and `best.pt` keeps the best epoch (give
    `Checkpoint` the same metric as `best_by`).

    Args:
        monitor: a column of `learn.history`: "valid_loss", "valid_acc", "train_loss" or "train_acc".
        patience: epochs without an improvement allowed; the fit stops at the end of the next one.
        min_delta: the least change that counts as an improvement.

    After `fit`: `best`, `best_epoch` and `stopped_epoch` (None when the fit ran to its end). Like
    the schedules, it needs no saved state: a resumed fit (`start_epoch > 0`) counts again from the
    rows of `learn.history` that the checkpoint brought back.

    Example:
        >>> learn.fit(30, cbs=[EarlyStopping("valid_loss", patience=3),
        ...                    Checkpoint("runs/a", best_by="valid_loss")])
    """

    order = 70  # after TrackResults (50) has the epoch's row and Checkpoint (60) has saved the epoch

    def __init__(self, monitor: str = "valid_loss", patience: int = 3, min_delta: float = 0.0) -> None:
        if monitor not in METRICS:
            raise ValueError(f"EarlyStopping: monitor must be one of {', '.join(METRICS)}, got {monitor!r}")
        self.monitor = monitor
        self.patience = check_int("EarlyStopping", "patience", patience)
        self.min_delta = check_number("EarlyStopping", "min_delta", min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0  # epochs since the last improvement
        self.stopped_epoch: int | None = None

    def _update(self, row: dict) -> bool:
        """Count one epoch's row of results; True when the fit should stop after it."""
        value = row.get(self.monitor)
        if value is None and self.monitor.startswith("valid_"):
            return False  # an epoch without a validation pass (`ValidateEvery`): neither better nor worse
        if is_improvement(self.monitor, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = float(value), int(row["epoch"]), 0
            return False
        self.wait += 1
        return self.wait >= self.patience

    def _count(self, rows) -> int | None:
        """Count from scratch through `rows` of results; return the epoch whose row stops a fit, or None."""
        self.best, self.best_epoch, self.wait = None, None, 0
        return next((int(row["epoch"]) for row in rows if self._update(row)), None)

    def stop_epoch(self, history: list[dict]) -> int | None:
        """The epoch after which these results stop a fit, or None (did a saved run stop early?)."""
        return EarlyStopping(self.monitor, self.patience, self.min_delta)._count(history)

    def before_fit(self) -> None:
        start = self.learn.epoch
        self._count([r for r in self.learn.history if r.get("epoch", start) < start])  # a resumed fit: so far
        self.stopped_epoch = None

    def after_epoch(self) -> None:
        learn = self.learn
        history = learn.history
        if not history or history[-1].get("epoch") != learn.epoch:
            raise ValueError(f"EarlyStopping({self.monitor!r}) reads learn.history, which has no row for epoch "
                             f"{learn.epoch}; add TrackResults() to the learner's callbacks (it fills "
                             f"learn.history)")
        if self._update(history[-1]):
            self.stopped_epoch = int(learn.epoch)
            best = ("no finite value yet" if self.best is None
                    else f"best {self.best:.4f} at epoch {self.best_epoch}")
            log.info("early stopping after epoch %d: %s has not improved for %d epochs (%s)",
                     learn.epoch, self.monitor, self.wait, best)
            raise CancelFitException

    def __repr__(self) -> str:
        return f"EarlyStopping({self.monitor!r}, patience={self.patience}, min_delta={self.min_delta})"
