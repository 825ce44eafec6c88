"""`ProgressBar`: tqdm bars over the epochs and over the batches of each pass."""

from __future__ import annotations

import time
from typing import TextIO

import torch
from tqdm import tqdm
from tqdm.auto import tqdm as tqdm_auto

from groundup.callbacks.core import Callback
from groundup.deprecation import moved_names
from groundup.process_group import is_main_process
from groundup.smoothing import EMA

__all__ = ["ProgressBar"]

_FOLD_EVERY = 256  # losses kept at most before they are folded into the average (bounds memory)


class ProgressBar(Callback):
    """Show a bar over the batches of each pass, with the smoothed training loss, and one over epochs.

    The bars are tqdm's: with no `file` given, `tqdm.auto` picks a widget in a Jupyter notebook and a
    text line elsewhere. Only one text bar is on screen at a time, on the last line: while a pass
    runs, its batch bar (labelled `epoch 3/10 train`); between passes, the epoch bar. A batch bar is
    closed (and its line erased) when its pass ends, before `after_epoch`, so table rows printed there
    (`TrackResults`, order 50) land on a clean line above the bar. The epoch bar's final state stays
    on screen after `fit`.

    The loss shown is `groundup.smoothing.EMA` (a bias-corrected moving average) kept on the device,
    with no host sync per batch: each training loss is kept (detached) and folded into the average in one
    vectorised step at the next redraw (or every 256 batches), and the value is read (one sync) only
    when the bar is about to redraw, at most every `min_interval` seconds. Between redraws tqdm is
    not called at all: the batch count catches up at the next redraw.

    Events used: `before_fit`/`after_fit` (the epoch bar), `before_train`/`before_validate` and
    `after_train`/`after_validate` (a batch bar per pass), `after_loss` (the running loss),
    `after_batch` (sometimes a redraw), `after_epoch` (the epoch bar).

    Args:
        enabled: draw at all? None (default): only when `file` is a terminal (or, with no `file`,
            in a notebook); False: never. In a distributed run only rank 0 draws.
        file: where to draw (default `sys.stderr`, looked up at each fit).
        beta: smoothing of the displayed loss, in [0, 1).
        min_interval: least seconds between two redraws (and loss reads).

    Example:
        >>> learn.fit(3, cbs=[ProgressBar(), TrackResults()])
    """

    order = 60  # after TrackResults (50): its row is printed before the epoch bar is redrawn

    def __init__(self, enabled: bool | None = None, file: TextIO | None = None, beta: float = 0.98,
                 min_interval: float = 0.1) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"ProgressBar: beta must be in [0, 1), got {beta!r}")
        self.enabled, self.file, self.beta, self.min_interval = enabled, file, beta, min_interval
        self.epoch_bar: tqdm | None = None
        self.batch_bar: tqdm | None = None
        self._losses: list[torch.Tensor] = []  # training losses not yet in the average
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
        if not is_main_process():  # in a distributed run only rank 0 draws
            return
        disable = None if self.enabled is None else not self.enabled  # tqdm's None: only on a terminal
        bar = self._bar(total=learn.n_epochs, initial=learn.epoch, desc="epochs", unit="epoch",
                        disable=disable, leave=True)
        self.epoch_bar = None if bar.disable else bar

    def _start_pass(self, name: str) -> None:
        if self.epoch_bar is None:
            return
        learn = self.learn
        self.epoch_bar.clear()  # one line: the batch bar takes the epoch bar's place while the pass runs
        self.batch_bar = self._bar(total=learn.n_iter or None, unit="batch", leave=False,
                                   desc=f"epoch {learn.epoch + 1}/{learn.n_epochs} {name}")
        self._next_draw = time.monotonic() + self.min_interval

    def before_train(self) -> None:
        self._start_pass("train")

    def before_validate(self) -> None:
        self._start_pass("valid")

    def after_loss(self) -> None:
        if self.epoch_bar is not None and self.learn.training:
            # A list append (under a microsecond) instead of a tensor op per batch (a few microseconds):
            # on a tiny model that is most of this callback's cost (benchmarks/bench_progress.py).
            self._losses.append(self.learn.loss.detach())  # detached: keeps no graph alive
            if len(self._losses) >= _FOLD_EVERY:
                self._fold()

    def _fold(self) -> None:
        """Fold the kept losses into the average, on the device and without a sync."""
        if self._losses:
            self._ema.update_many(torch.stack(self._losses).float())  # (k,)
            self._losses = []

    def after_batch(self) -> None:
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
        if self.epoch_bar is not None:
            self.epoch_bar.update()  # draws now, below the row TrackResults just printed

    def after_fit(self) -> None:
        self._end_pass()  # a cancel or an error may have left a pass open
        if self.epoch_bar is not None:
            self.epoch_bar.close()  # leave=True: draws the final state and ends the line
            self.epoch_bar = None
        self._losses = []

    def __repr__(self) -> str:
        return f"ProgressBar(enabled={self.enabled})"


__getattr__ = moved_names(__name__, {"ProgressCB": "groundup.callbacks.progress.ProgressBar"})  # the name before 0.2
