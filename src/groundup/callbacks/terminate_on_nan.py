"""`TerminateOnNaN`: stop training with an error when the loss stops being a finite number.

A NaN or infinite loss poisons the weights at the next step, and every later epoch trains
nothing: the run goes on, writes NaN weights to its checkpoints and predicts "nan". This callback
stops the fit with `NonFiniteLossError` (naming the epoch and the batch) before the `Checkpoint`
callback saves the broken weights, so the last good checkpoint stays the one on disk.

It costs no host sync per batch (STYLE §9): each batch adds two tiny operations on the device
(is the loss finite; the index of the first batch that was not), and the host looks at the
result every `check_every` training batches and at the end of each pass. fastai's and Keras's
`TerminateOnNaN` do the same job, checking every batch.
"""

from __future__ import annotations

import torch

from groundup.callbacks.core import Callback
from groundup.utils.checks import check_int
from groundup.utils.errors import GroundupError

__all__ = ["NonFiniteLossError", "TerminateOnNaN"]


class NonFiniteLossError(GroundupError, FloatingPointError):
    """The loss (or the weights) became NaN or infinite; the message names the epoch and batch and what to try."""


class TerminateOnNaN(Callback):
    """Raise `NonFiniteLossError` when a training or validation loss is NaN or infinite.

    Args:
        check_every: look at the device-side flag every this many training batches (one host
            sync each time); it is also checked at the end of every training and validation pass,
            and the weights are checked once per epoch, after the training pass.

    `fit` stops with the error (`after_fit` still runs); the `Checkpoint` callback writes nothing
    of the epoch it happened in, so `model.pt` and `best.pt` keep the last good epoch.

    Example:
        >>> learn.fit(10, cbs=[TerminateOnNaN(), Checkpoint("runs/a")])
    """

    order = 40  # before TrackResults (50) and Checkpoint (60) look at the pass that just ended

    def __init__(self, check_every: int = 100) -> None:
        self.check_every = check_int("TerminateOnNaN", "check_every", check_every)
        self._first_bad = self._bad_loss = None

    def _reset(self) -> None:
        self._first_bad = self._bad_loss = None  # device tensors once the pass's first loss arrives

    before_train = before_validate = _reset

    def after_loss(self) -> None:
        learn = self.learn
        loss = learn.loss.detach().float()
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self._bad_loss = torch.zeros((), device=loss.device)
        newly_bad = ~torch.isfinite(loss).all() & (self._first_bad < 0)  # no sync: stays on the device
        self._first_bad = torch.where(newly_bad, learn.iter, self._first_bad)
        self._bad_loss = torch.where(newly_bad, loss.reshape(-1)[0], self._bad_loss)

    def after_batch(self) -> None:
        if self.learn.training and (self.learn.iter + 1) % self.check_every == 0:
            self._check()

    def after_train(self) -> None:
        self._check()
        params = [p.detach() for p in self.learn.unwrapped_model.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):  # one sync per epoch
            raise NonFiniteLossError(
                f"the weights became NaN or infinite in epoch {self.learn.epoch}, while every training loss "
                f"was finite{self._advice()}")

    def after_validate(self) -> None:
        self._check()

    def _check(self) -> None:
        if self._first_bad is None:
            return
        batch = int(self._first_bad)  # the host sync
        if batch < 0:
            return
        learn = self.learn
        which = "training" if learn.training else "validation"
        of = f" (of {learn.n_iter})" if learn.n_iter else ""
        raise NonFiniteLossError(f"the {which} loss became {float(self._bad_loss)} at epoch {learn.epoch}, "
                                 f"batch {batch}{of}{self._advice()}")

    def _advice(self) -> str:
        return (f"; training stopped before the weights of epoch {self.learn.epoch} were saved. The learning "
                f"rate (lr={self.learn.lr:g}) is probably too high: try a lower one")

    def __repr__(self) -> str:
        return f"TerminateOnNaN(check_every={self.check_every})"
