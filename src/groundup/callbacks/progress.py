"""`ProgressCB`: progress bars over the epochs and over the batches of each pass."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

import torch

from groundup.callbacks.core import Callback
from groundup.process_group import is_main_process
from groundup.progress import ProgressBar

__all__ = ["ProgressCB"]


class ProgressCB(Callback):
    """Show a bar over the batches of each pass, with the smoothed training loss, and one over epochs.

    Only one bar is on screen at a time, on the last line: while a pass runs, its batch bar
    (labelled `epoch 3/10 train`); between passes, the epoch bar. A batch bar is erased when its
    pass ends, before `after_epoch`, so table rows printed there (`TrackResults`, order 50) land on
    a clean line above the bar. The epoch bar's final state stays on screen after `fit`.

    The loss shown is an exponential moving average (with bias correction) kept on the device:
    one small tensor op per batch and no host sync; the value is read (one sync) only when the
    bar is about to redraw, at most every `min_interval` seconds.

    Events used: `before_fit`/`after_fit` (the epoch bar), `before_train`/`before_validate` and
    `after_train`/`after_validate` (a batch bar per pass), `after_loss` (the running loss),
    `after_batch` (count, and sometimes redraw), `after_epoch` (the epoch bar).

    Args:
        enabled: draw at all? None (default): only when `file` is a terminal; False: never.
            In a distributed run only rank 0 draws.
        file: where to draw (default `sys.stderr`, looked up at each fit).
        beta: smoothing of the displayed loss, in [0, 1).
        min_interval: least seconds between two redraws (and loss reads).

    Example:
        >>> learn.fit(3, cbs=[ProgressCB(), TrackResults()])
    """

    order = 60  # after TrackResults (50): its row is printed before the epoch bar is redrawn

    def __init__(self, enabled: bool | None = None, file: TextIO | None = None, beta: float = 0.98,
                 min_interval: float = 0.1) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"ProgressCB: beta must be in [0, 1), got {beta!r}")
        self.enabled, self.file, self.beta, self.min_interval = enabled, file, beta, min_interval
        self.epoch_bar: ProgressBar | None = None
        self.batch_bar: ProgressBar | None = None
        self._on = False
        self._epoch_bar_shown = False
        self._avg: torch.Tensor | None = None
        self._count = 0
        self._next_draw = 0.0

    def _out(self) -> TextIO:
        return self.file if self.file is not None else sys.stderr

    def before_fit(self) -> None:
        learn = self.learn
        enabled = self.enabled if is_main_process() else False  # in a distributed run only rank 0 draws
        self.epoch_bar = ProgressBar(total=learn.n_epochs, desc="epochs", unit="epoch", file=self._out(),
                                     enabled=enabled, min_interval=math.inf, initial=learn.epoch)
        self._on = self.epoch_bar.enabled
        self._epoch_bar_shown = self._on  # a bar draws itself when made
        self._avg, self._count = None, 0

    def _start_pass(self, name: str) -> None:
        if not self._on:
            return
        learn = self.learn
        if self._epoch_bar_shown:
            _erase(self.epoch_bar)
            self._epoch_bar_shown = False
        # min_interval=inf: the bar never redraws by itself; after_batch decides when (and reads
        # the loss just then), so a loss read and a redraw always go together.
        self.batch_bar = ProgressBar(total=learn.n_iter or None,
                                     desc=f"epoch {learn.epoch + 1}/{learn.n_epochs} {name}", unit="batch",
                                     file=self._out(), enabled=True, min_interval=math.inf)
        self._next_draw = time.monotonic() + self.min_interval

    def before_train(self) -> None:
        self._start_pass("train")

    def before_validate(self) -> None:
        self._start_pass("valid")

    def after_loss(self) -> None:
        if self._on and self.learn.training:
            loss = self.learn.loss.detach().float()
            # A running average on the device: avg = beta * avg + (1 - beta) * loss, no sync.
            self._avg = loss * (1 - self.beta) if self._avg is None else torch.lerp(self._avg, loss, 1 - self.beta)
            self._count += 1

    def after_batch(self) -> None:
        bar = self.batch_bar
        if bar is None:
            return
        bar.update()
        now = time.monotonic()
        if now >= self._next_draw:
            if self.learn.training and self._avg is not None:
                smooth = self._avg.item() / (1 - self.beta ** self._count)  # the one sync, per redraw
                bar.set_postfix(f"loss {smooth:.4f}")
            bar.refresh()
            self._next_draw = now + self.min_interval

    def _end_pass(self) -> None:
        if self.batch_bar is not None:
            _erase(self.batch_bar)
            self.batch_bar = None

    after_train = after_validate = _end_pass

    def after_epoch(self) -> None:
        if self._on:
            self.epoch_bar.update()  # min_interval=inf: counts without drawing ...
            self.epoch_bar.refresh()  # ... and this draws
            self._epoch_bar_shown = True

    def after_fit(self) -> None:
        self._end_pass()  # a cancel or an error may have left a pass open
        if self.epoch_bar is not None:
            self.epoch_bar.close()  # draws the final state and ends the line
            self.epoch_bar = None
        self._avg = None

    def __repr__(self) -> str:
        return f"ProgressCB(enabled={self.enabled})"


def _erase(bar: ProgressBar | None) -> None:
    """Blank out a bar's line and put the cursor back at its start (the bar's state is kept)."""
    if bar is None or not bar.enabled or bar.closed:
        return
    bar.refresh()  # draw now, so the width of the line on screen is the width of the line measured
    width = len(bar.format_line()) + 2  # + 2: a counter that just gained a digit
    bar.file.write("\r" + " " * width + "\r")
    bar.file.flush()
