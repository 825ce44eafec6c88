"""`ProgressBar`: tqdm bars over the epochs and the batches of each pass; plain lines without a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import torch
from tqdm import tqdm
from tqdm.auto import tqdm as tqdm_auto

from groundup.callbacks.core import Callback
from groundup.utils.process_group import is_main_process
from groundup.utils.smoothing import EMA

__all__ = ["ProgressBar"]

_FOLD_EVERY = 256  # losses kept at most before they are folded into the average (bounds memory)
_now = time.monotonic  # the clock of the plain lines (tests replace it)


def _in_notebook() -> bool:
    """Whether tqdm.auto draws widgets here (a Jupyter kernel), as it decides it."""
    import tqdm.autonotebook
    import tqdm.std

    return tqdm.autonotebook.tqdm is not tqdm.std.tqdm


class ProgressBar(Callback):
    """Show a bar over the batches of each pass, with the smoothed training loss, and one over epochs.

    The bars are tqdm's: with no `file` given, `tqdm.auto` picks a widget in a Jupyter notebook and a
    text line elsewhere. Only one text bar is on screen at a time, on the last line: while a pass
    runs, its batch bar (labelled `epoch 3 train`: epochs are numbered from 0, as in `TrackResults`'
    table, `metrics.csv` and the run's report); between passes, the epoch bar. A batch bar is
    closed (and its line erased) when its pass ends, before `after_epoch`, so table rows printed there
    (`TrackResults`, order 50) land on a clean line above the bar. The epoch bar's final state stays
    on screen after `fit`.

    The loss shown is `groundup.utils.smoothing.EMA` (a bias-corrected moving average) kept on the device,
    with no host sync per batch: each training loss is kept (detached) and folded into the average in one
    vectorised step at the next redraw (or every 256 batches), and the value is read (one sync) only
    when the bar is about to redraw, at most every `min_interval` seconds. Between redraws tqdm is
    not called at all: the batch count catches up at the next redraw.

    Where the output is not a terminal (a pipe, a file, a CI log) a bar would be a mess of
    carriage returns, so it prints plain lines instead: one when each epoch ends (its time, the
    training speed, the epoch's mean training loss: the table's `train_loss`) and, in an epoch that takes longer than `long_epoch`
    seconds (estimated from the speed so far), one every `line_every` seconds with the batch
    count, the speed and the time left in the pass.

    Events used: `before_fit`/`after_fit` (the epoch bar), `before_train`/`before_validate` and
    `after_train`/`after_validate` (a batch bar per pass), `after_loss` (the running loss),
    `after_batch` (sometimes a redraw or a line), `after_epoch` (the epoch bar or line).

    Args:
        enabled: None (default): bars on a terminal (or, with no `file`, in a notebook), plain lines
            anywhere else; True: bars wherever `file` is; False: nothing. In a distributed run only
            rank 0 draws.
        file: where to draw (default `sys.stderr`, looked up at each fit).
        beta: smoothing of the displayed loss, in [0, 1).
        min_interval: least seconds between two redraws (and loss reads).
        line_every: seconds between two lines during a long epoch, without a terminal.
        long_epoch: epochs expected to last longer than this many seconds get lines during the epoch.

    Example:
        >>> learn.fit(3, cbs=[ProgressBar(), TrackResults()])
    """

    order = 60  # after TrackResults (50): its row is printed before the epoch bar is redrawn

    def __init__(self, enabled: bool | None = None, file: TextIO | None = None, beta: float = 0.98,
                 min_interval: float = 0.1, line_every: float = 30.0, long_epoch: float = 60.0) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"ProgressBar: beta must be in [0, 1), got {beta!r}")
        self.enabled, self.file, self.beta, self.min_interval = enabled, file, beta, min_interval
        self.line_every, self.long_epoch = line_every, long_epoch
        self.lines = False  # plain lines instead of bars (no terminal), decided at each fit
        self.epoch_bar: tqdm | None = None
        self.batch_bar: tqdm | None = None
        self._losses: list[torch.Tensor] = []  # training losses not yet in the average
        self._epoch_losses: list[torch.Tensor] = []  # this epoch's training losses (plain lines only)
        self._ema = EMA(beta)  # the displayed loss, on the device
        self._next_draw = 0.0

    def _bar(self, **kwargs) -> tqdm:
        # Both bars share line 0 (position=0) and draw whenever `update` is called (mininterval=0,
        # miniters=1): this callback decides when, so that a redraw and a loss read go together.
        cls = tqdm_auto if self.file is None else tqdm  # a file given explicitly gets text, not a widget
        return cls(file=self.file, position=0, mininterval=0, miniters=1, **kwargs)

    def before_fit(self) -> None:
        learn = self.learn
        self._losses, self._ema = [], EMA(self.beta)
        self.lines, self._train_batches = False, 0
        if not is_main_process():  # in a distributed run only rank 0 draws
            return
        in_notebook = self.file is None and _in_notebook()
        if self.enabled is None and not _isatty(self.file or sys.stderr) and not in_notebook:
            self.lines = True
            self._epoch_start, self._last_epoch_seconds = _now(), 0.0
            return
        disable = None if self.enabled is None else not self.enabled  # tqdm's None: only on a terminal
        bar = self._bar(total=learn.n_epochs, initial=learn.epoch, desc="epochs", unit="epoch",
                        disable=disable, leave=True)
        self.epoch_bar = None if bar.disable else bar

    def _start_pass(self, name: str) -> None:
        if self.lines:
            self._pass, self._pass_start = name, _now()
            self._next_line = self._pass_start + self.line_every
            if name == "train":
                self._epoch_start, self._train_batches = self._pass_start, self.learn.n_iter
                self._epoch_losses = []
            return
        if self.epoch_bar is None:
            return
        learn = self.learn
        self.epoch_bar.clear()  # one line: the batch bar takes the epoch bar's place while the pass runs
        self.batch_bar = self._bar(total=learn.n_iter or None, unit="batch", leave=False,
                                   desc=f"epoch {learn.epoch} {name}")
        self._next_draw = time.monotonic() + self.min_interval

    def before_train(self) -> None:
        self._start_pass("train")

    def before_validate(self) -> None:
        self._start_pass("valid")

    def after_loss(self) -> None:
        if (self.epoch_bar is not None or self.lines) and self.learn.training:
            # A list append (under a microsecond) instead of a tensor op per batch (a few microseconds):
            # on a tiny model that is most of this callback's cost (benchmarks/bench_progress.py).
            loss = self.learn.loss.detach()  # detached: keeps no graph alive
            self._losses.append(loss)
            if self.lines:
                self._epoch_losses.append(loss)
            if len(self._losses) >= _FOLD_EVERY:
                self._fold()

    def _fold(self) -> None:
        """Fold the kept losses into the average, on the device and without a sync."""
        if self._losses:
            self._ema.update_many(torch.stack(self._losses).float())  # (k,)
            self._losses = []

    def after_batch(self) -> None:
        if self.lines:
            if _now() >= self._next_line:  # the one check per batch without a terminal
                self._line_during_pass()
            return
        bar = self.batch_bar
        if bar is None:
            return
        now = time.monotonic()
        if now < self._next_draw:
            return
        self._fold()
        if self.learn.training and self._ema.count:
            smooth = self._ema.value.item()  # the one sync, per redraw
            bar.set_postfix_str(f"loss {smooth:.4f}", refresh=False)
        bar.update(self.learn.iter + 1 - bar.n)  # count the batches since the last redraw, and draw
        self._next_draw = now + self.min_interval

    def _end_pass(self) -> None:
        if self.batch_bar is not None:
            self.batch_bar.close()  # leave=False: erases its line, so `after_epoch` prints on a clean one
            self.batch_bar = None

    after_train = after_validate = _end_pass

    def after_epoch(self) -> None:
        if self.lines:
            seconds = _now() - self._epoch_start
            self._last_epoch_seconds = seconds
            learn = self.learn
            n = self._train_batches
            speed = f", {n / seconds:.3g} batch/s" if n and seconds > 0 else ""
            self._say(f"epoch {learn.epoch} done in {_duration(seconds)}, {learn.epoch + 1} of {learn.n_epochs} "
                      f"({n} training batches{speed}{self._epoch_loss_text()})")
        if self.epoch_bar is not None:
            self.epoch_bar.update()  # draws now, below the row TrackResults just printed

    # -- plain lines, where there is no terminal --------------------------------------------------------
    def _line_during_pass(self) -> None:
        learn, now = self.learn, _now()
        self._next_line = now + self.line_every
        done, total, elapsed = learn.iter + 1, learn.n_iter, now - self._pass_start
        rate = done / elapsed if elapsed > 0 else 0.0
        left_s = (total - done) / rate if rate and total else float("inf")
        expected = max(self._last_epoch_seconds, now - self._epoch_start + left_s)  # this epoch's length
        if expected <= self.long_epoch:  # a short epoch: its one line at the end is enough
            return
        left = f", about {_duration(left_s)} left" if rate and total else ""
        loss = self._loss_text() if self._pass == "train" else ""
        self._say(f"epoch {learn.epoch} {self._pass}: batch {done}/{total or '?'}, "
                  f"{rate:.3g} batch/s{loss}{left}")

    def _loss_text(self) -> str:
        self._fold()
        return f", loss {self._ema.value.item():.4f}" if self._ema.count else ""  # one sync per line

    def _epoch_loss_text(self) -> str:
        """The epoch's mean training loss: the table's `train_loss` when `TrackResults` (order 50) has
        recorded it, else the mean of the epoch's batch losses (one sync)."""
        row = self.learn.history[-1] if self.learn.history else {}
        if row.get("epoch") == self.learn.epoch and "train_loss" in row:
            return f", train_loss {row['train_loss']:.4f}"
        losses, self._epoch_losses = self._epoch_losses, []
        return f", train_loss {torch.stack(losses).float().mean().item():.4f}" if losses else ""

    def _say(self, line: str) -> None:
        print(line, file=self.file or sys.stderr, flush=True)

    def after_fit(self) -> None:
        self._end_pass()  # a cancel or an error may have left a pass open
        if self.epoch_bar is not None:
            self.epoch_bar.close()  # leave=True: draws the final state and ends the line
            self.epoch_bar = None
        self._losses = []

    def __repr__(self) -> str:
        return f"ProgressBar(enabled={self.enabled})"


def _isatty(file) -> bool:
    isatty = getattr(file, "isatty", None)
    return bool(isatty and isatty())


def _duration(seconds: float) -> str:
    """`42.0 s`, `3.5 min` or `2.1 h`."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"

