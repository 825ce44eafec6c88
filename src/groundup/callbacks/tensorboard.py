"""`TensorBoardLogger`: loss and lr per batch, metrics per epoch and the hyper-parameters, for TensorBoard.

Needs the `tensorboard` package, an optional extra: `pip install 'groundup[tensorboard]'`. Then
`tensorboard --logdir runs/` shows every run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from groundup.callbacks.core import Callback
from groundup.callbacks.tracking import METRICS
from groundup.utils.checks import check_int
from groundup.utils.process_group import is_main_process

__all__ = ["TensorBoardLogger", "require_tensorboard"]

INSTALL_HINT = "pip install 'groundup[tensorboard]' (or: pip install tensorboard)"


def require_tensorboard() -> type:
    """torch's `SummaryWriter`, or ModuleNotFoundError saying how to install the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ModuleNotFoundError(f"TensorBoard logging needs the tensorboard package: {INSTALL_HINT}") from e
    return SummaryWriter


class TensorBoardLogger(Callback):
    """Write TensorBoard event files into `log_dir`.

    Scalars (tags):
        train/loss, train/lr      every training batch, at step = training batches so far
        epoch/train_loss, epoch/train_acc, epoch/valid_loss, epoch/valid_acc
                                  every epoch (from `learn.history`, as `TrackResults` fills it), at step = epoch
    and the hyper-parameters (TensorBoard's HPARAMS tab), written when `fit` starts, linked to the
    epoch metrics.

    As `StepLogger`, it keeps each batch's loss as a detached tensor and writes `every` batches at
    a time (and at the end of each training pass): no host sync per batch. A resumed fit
    (`start_epoch > 0`) hides what an earlier session wrote from that point on (`purge_step`).
    In a distributed run only rank 0 writes.

    Args:
        log_dir: the folder for the event files (a run folder's `tensorboard/`).
        hparams: the settings to show (e.g. `TrainConfig.to_dict()`); values that are not numbers,
            strings or booleans are shown as text. Default: lr and n_epochs.
        every: batches kept at most before they are written.

    Example:
        >>> learn.fit(5, cbs=[TensorBoardLogger("runs/a/tensorboard", hparams={"lr": 0.01, "bs": 64})])
    """

    order = 65  # after TrackResults (50) has the epoch's row; before EarlyStopping (70) may end the fit

    def __init__(self, log_dir: str | os.PathLike, hparams: dict[str, Any] | None = None,
                 every: int = 100) -> None:
        self._writer_class = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.hparams = None if hparams is None else dict(hparams)
        self.every = check_int("TensorBoardLogger", "every", every)
        self.writer = None
        self._steps: list[tuple[int, float]] = []
        self._losses: list[torch.Tensor] = []

    def before_fit(self) -> None:
        learn = self.learn
        self._steps, self._losses = [], []
        if not is_main_process():
            return
        n_iter = len(learn.dls.train) if hasattr(learn.dls.train, "__len__") else 0
        purge = learn.epoch * n_iter if learn.epoch > 0 else None  # a resumed fit rewrites from here
        self.writer = self._writer_class(str(self.log_dir), purge_step=purge)
        self._write_hparams()

    def _write_hparams(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        given = self.hparams
        if given is None:
            given = {"lr": self.learn.lr, "n_epochs": self.learn.n_epochs}
        shown = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in given.items()}
        metrics = {f"epoch/{m}": 0.0 for m in METRICS}  # the tags the epoch scalars are written under
        for summary in hparams(shown, metrics):  # experiment, session start, session end
            self.writer.file_writer.add_summary(summary)

    def after_loss(self) -> None:
        learn = self.learn
        if self.writer is None or not learn.training:
            return
        self._losses.append(learn.loss.detach())
        self._steps.append((learn.epoch * learn.n_iter + learn.iter, learn.opt.param_groups[0]["lr"]))
        if len(self._steps) >= self.every:
            self._flush()

    def _flush(self) -> None:
        if not self._steps:
            return
        losses = torch.stack([t.float().reshape(()) for t in self._losses]).tolist()  # one sync per chunk
        for (step, lr), loss in zip(self._steps, losses):
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", float(lr), step)
        self._steps, self._losses = [], []

    def after_train(self) -> None:
        if self.writer is not None:
            self._flush()

    def after_epoch(self) -> None:
        history = self.learn.history
        if self.writer is None or not history or history[-1].get("epoch") != self.learn.epoch:
            return
        for m in METRICS:
            if history[-1].get(m) is not None:
                self.writer.add_scalar(f"epoch/{m}", history[-1][m], self.learn.epoch)
        self.writer.flush()

    def after_fit(self) -> None:
        if self.writer is not None:
            self._flush()
            self.writer.close()
            self.writer = None

    def __repr__(self) -> str:
        return f"TensorBoardLogger({str(self.log_dir)!r}, every={self.every})"
