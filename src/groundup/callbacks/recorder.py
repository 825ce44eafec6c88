"""`Recorder`: the learning rate and loss of every training batch, for plots and diagnosis."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from groundup.callbacks.core import Callback
from groundup.utils.smoothing import EMA

__all__ = ["Recorder"]


class Recorder(Callback):
    """Record the lr and the loss of every training batch, plus an exponentially smoothed loss.

    The loss of each batch is kept as a detached tensor on its device and turned into Python
    floats once per epoch (in `after_train`) and at the end of `fit`, so recording costs no
    host-device sync per batch. Reading `losses` or `smooth_losses` mid-epoch converts what is
    pending (one sync).

    The smoothed loss is `groundup.utils.smoothing.EMA`: an exponential moving average with bias
    correction (as in Adam), so the first values are not pulled towards 0.

    Events used: `before_fit` (start a record), `after_loss` (keep the loss tensor and the lr, training
    only), `after_train` and `after_fit` (convert to floats). A good model for a callback that
    watches training without slowing it down.

    Args:
        beta: the smoothing factor in [0, 1); higher is smoother.

    A `fit` that starts at epoch 0 starts a new record; a resumed `fit(n, start_epoch=k)` appends
    to it (restore the record with `load_state_dict` first).

    Example:
        >>> rec = Recorder()
        >>> learn.fit(2, cbs=[rec])
        >>> rec.plot_loss("loss.png"); rec.plot_lr("lr.png")
    """

    order = 20  # after schedules (order 10) set this batch's lr in before_batch
    during_lr_find = False  # the LR finder's batches are no part of the record

    def __init__(self, beta: float = 0.98) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"Recorder: beta must be in [0, 1), got {beta!r}")
        self.beta = beta
        self._lrs: list[float] = []
        self._losses: list[float] = []
        self._smooth: list[float] = []
        self._pending: list[torch.Tensor] = []  # detached per-batch losses not yet converted
        self._pending_lrs: list = []
        self._avg = EMA(beta)  # behind the smoothed loss

    def before_fit(self) -> None:
        if self.learn.epoch == 0:
            self._lrs, self._losses, self._smooth = [], [], []
            self._pending, self._pending_lrs = [], []
            self._avg = EMA(self.beta)

    def extend(self, lrs: Sequence[float], losses: Sequence[float]) -> None:
        """Add batches recorded earlier (a resumed run's epochs before this fit, as `StepLogger` wrote them)."""
        self._flush()
        losses = [float(loss) for loss in losses]
        self._lrs.extend(float(lr) for lr in lrs)
        self._smooth.extend(self._avg.update(loss) for loss in losses)
        self._losses.extend(losses)

    def after_loss(self) -> None:
        learn = self.learn
        if learn.training:
            self._pending.append(learn.loss.detach())
            self._pending_lrs.append(learn.opt.param_groups[-1]["lr"])  # the head's (with discriminative lrs, the highest)

    def after_train(self) -> None:
        self._flush()

    def after_fit(self) -> None:
        self._flush()

    def _flush(self) -> None:
        """Turn the pending loss tensors into floats with one sync, and extend the smoothed curve."""
        if not self._pending:
            return
        losses = torch.stack([t.float().reshape(()) for t in self._pending]).tolist()  # the one sync
        self._lrs.extend(float(lr) for lr in self._pending_lrs)
        self._pending, self._pending_lrs = [], []
        self._smooth.extend(self._avg.update(loss) for loss in losses)
        self._losses.extend(losses)

    @property
    def lrs(self) -> list[float]:
        """The learning rate (of the first parameter group) used for each training batch."""
        self._flush()
        return list(self._lrs)

    @property
    def losses(self) -> list[float]:
        """The loss of each training batch."""
        self._flush()
        return list(self._losses)

    @property
    def smooth_losses(self) -> list[float]:
        """The exponentially smoothed, bias-corrected loss after each training batch."""
        self._flush()
        return list(self._smooth)

    @property
    def iters(self) -> list[int]:
        """Training batch numbers 0, 1, 2, ... (counting across epochs): the x axis of the plots."""
        self._flush()
        return list(range(len(self._losses)))

    def plot_loss(self, path: str | os.PathLike | None = None, skip_start: int = 0):
        """The loss per training batch (faint) and its smoothed curve, as a matplotlib `Figure`.

        Args:
            path: also write the figure to this PNG file (default: no file; a notebook shows it inline).
            skip_start: leave out the first batches (their high loss flattens the rest of the plot).
        """
        from groundup.utils.plots import figure_axes, finish_figure

        iters, losses, smooth = self.iters[skip_start:], self.losses[skip_start:], self.smooth_losses[skip_start:]
        if not losses:
            raise ValueError(f"Recorder.plot_loss: no losses recorded (after skip_start={skip_start}); "
                             f"run learn.fit(...) with this callback first")
        fig, ax = figure_axes(title="training loss", xlabel="training batch", ylabel="loss")
        ax.plot(iters, losses, color="C0", alpha=0.3, label="loss")
        ax.plot(iters, smooth, color="C0", label=f"smoothed (beta={self.beta})")
        ax.legend()
        return finish_figure(fig, path)

    def plot_lr(self, path: str | os.PathLike | None = None):
        """The learning rate per training batch, as a `Figure` (written to `path` as a PNG when given)."""
        from groundup.utils.plots import figure_axes, finish_figure

        if not self.lrs:
            raise ValueError("Recorder.plot_lr: no learning rates recorded; run learn.fit(...) with this "
                             "callback first")
        fig, ax = figure_axes(title="learning rate", xlabel="training batch", ylabel="lr")
        ax.plot(self.iters, self.lrs)
        return finish_figure(fig, path)

    def state_dict(self) -> dict:
        """The record so far (plain lists and floats)."""
        self._flush()
        return {"beta": self.beta, "lrs": list(self._lrs), "losses": list(self._losses),
                "smooth_losses": list(self._smooth), "avg": self._avg.avg}

    def load_state_dict(self, state: dict) -> None:
        """Restore a record saved by `state_dict` (a resumed fit then appends to it)."""
        self.beta = state["beta"]
        self._lrs, self._losses = list(state["lrs"]), list(state["losses"])
        self._smooth = list(state["smooth_losses"])
        self._avg = EMA(self.beta)
        self._avg.avg, self._avg.count = state["avg"], len(self._losses)
        self._pending, self._pending_lrs = [], []

    def __repr__(self) -> str:
        return f"Recorder(beta={self.beta}, batches={len(self._losses) + len(self._pending)})"
