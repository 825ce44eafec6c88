"""Fit a built Learner as a run does: the LR finder (with `lr="auto"`), the run's callbacks, resuming, `fit`.

The callbacks of a run: TerminateOnNaN, TrackResults (the table), Recorder, Checkpoint (model.pt after
every epoch, best.pt), metrics.csv after every epoch, steps.csv, and as the settings ask EarlyStopping,
GradientClipping, GradientAccumulation, TensorBoardLogger and the progress bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.core import Callback
from groundup.callbacks.early_stopping import EarlyStopping
from groundup.callbacks.ema import EMA
from groundup.callbacks.gradient_accumulation import GradientAccumulation
from groundup.callbacks.gradient_clipping import GradientClipping
from groundup.callbacks.progress import ProgressBar
from groundup.callbacks.progressive_resize import ProgressiveResize
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.step_logger import StepLogger, read_steps
from groundup.callbacks.tensorboard import TensorBoardLogger
from groundup.callbacks.terminate_on_nan import TerminateOnNaN
from groundup.callbacks.tracking import TrackResults
from groundup.callbacks.validate_every import ValidateEvery
from groundup.learner import Learner
from groundup.run.config import TrainConfig, auto_lr_rule
from groundup.run.init import init_lr
from groundup.run.report import write_metrics_csv
from groundup.run.resume import Resume
from groundup.utils.atomic import atomic_write
from groundup.utils.process_group import broadcast_, is_main_process

__all__ = ["MetricsFile", "fit_run"]

log = logging.getLogger("groundup.run")


class MetricsFile(Callback):
    """Rewrite metrics.csv after each epoch, so a run that is stopped still has its table on disk."""

    # After TrackResults (50) has finished the epoch's row and Checkpoint (60) has saved the epoch:
    # metrics.csv never lists an epoch whose checkpoint was not written (a full disk, a kill).
    order = 65

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_epoch(self) -> None:
        write_metrics_csv(self.learn.history, self.path)


def fit_run(learn: Learner, cfg: TrainConfig, run_dir: Path, resume: Resume | None = None,
            quiet: bool = False, say: Callable[..., None] | None = None,
            init: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit `learn` as a run does (see the module docstring); return facts for the summary.

    `init` is what `apply_init` loaded (`--init`; None otherwise): the head is trained first with the
    body frozen (`cfg.freeze_epochs`), then the run's epochs use discriminative learning rates (`init_lr`).
    `resume` is the run being continued (its checkpoint already read, by `open_resume`). `quiet`
    leaves out the table and the progress bar; messages go to `say` (default: the "groundup.run"
    logger's `info`).

    Returns:
        `{"recorder", "checkpoint", "lr_finder", "start_epoch", "stopped_epoch"}`: the per-batch record,
        the `Checkpoint` callback (which epoch `best.pt` holds), the LR
        finder's result (None unless `cfg.lr == "auto"`, or resumed from a run that used it), the
        first epoch run, and the epoch after which early stopping ended the run (None if it did not).
    """
    main_process = is_main_process()
    say = say or log.info
    lr_found = resume.lr_finder if resume is not None else None
    if cfg.lr == "auto":  # before the other callbacks join: the finder's short fit is not part of the run
        found = learn.lr_find(path=run_dir / "lr_find.png" if main_process else None,
                              **auto_lr_rule(cfg.opt))  # the rule measured for the optimizer
        lr = torch.tensor([found.lr], dtype=torch.float64)
        broadcast_([lr])  # every rank uses rank 0's suggestion
        cfg.lr = learn.lr = float(lr.item())  # recorded once: in the config
        lr_found = {"method": found.method, "how": found.describe()}
        say(f"lr finder suggests lr={cfg.lr:.3g} ({found.describe()}); wrote {run_dir / 'lr_find.png'}")
    if init is not None and cfg.freeze_epochs:  # fine_tune's first phase, before the run's callbacks join
        warm = TrackResults(print_table=False)
        learn.freeze()
        learn.fit_one_cycle(cfg.freeze_epochs, slice(cfg.lr), pct_start=0.99, cbs=[warm])
        learn.unfreeze()
        done = learn.history[-1]
        init["frozen"] = {k: done[k] for k in ("train_loss", "valid_loss", "valid_acc", "seconds") if k in done}
        learn.history = []
        say(f"trained the head for {cfg.freeze_epochs} epochs with the body frozen: valid_loss "
            f"{done.get('valid_loss', float('nan')):.4f}, valid_acc {done.get('valid_acc', float('nan')):.4f}")
    # From other weights (--init), the run's epochs fine-tune with discriminative lrs (fine_tune's second phase).
    lr = init_lr(cfg.lr) if cfg.init is not None else cfg.lr

    recorder = Recorder()
    checkpoint = Checkpoint(run_dir, best_by=cfg.monitor, extra={"config": cfg.to_dict(),
                                                                 "run": {"lr_finder": lr_found,
                                                                         "data_path": _data_path(learn)}})
    cbs: list[Callback] = [TerminateOnNaN(), TrackResults(print_table=not quiet and main_process), recorder,
                           checkpoint]
    early = EarlyStopping(cfg.monitor, cfg.patience) if cfg.patience is not None else None
    if early is not None:
        cbs.append(early)
    if cfg.start_size is not None:
        cbs.append(ProgressiveResize(cfg.start_size, cfg.grow_until))
    if cfg.valid_every > 1:
        cbs.append(ValidateEvery(cfg.valid_every))
    if cfg.ema > 0:
        cbs.append(EMA(cfg.ema))
    if cfg.clip is not None:
        cbs.append(GradientClipping(cfg.clip))
    if cfg.accumulate > 1:
        cbs.append(GradientAccumulation(cfg.accumulate))
    if main_process:
        cbs += [MetricsFile(run_dir / "metrics.csv"), StepLogger(run_dir / "steps.csv")]
        if cfg.tensorboard:
            cbs.append(TensorBoardLogger(run_dir / "tensorboard", hparams=cfg.to_dict()))
        if not quiet:
            cbs.append(ProgressBar())
    for cb in cbs:
        learn.add_cb(cb)

    start_epoch, stopped_epoch = 0, None
    if resume is not None:
        start_epoch = learn.load(resume.path, checkpoint=resume.checkpoint)["epoch"] + 1
        if main_process:  # the batches of the epochs before: the loss and lr plots show the whole run
            steps = read_steps(run_dir / "steps.csv", start_epoch)
            recorder.extend([row["lr"] for row in steps], [row["loss"] for row in steps])
        stopped_epoch = early.stop_epoch(learn.history) if early is not None else None
        if stopped_epoch is not None:  # it stopped early: it is finished
            start_epoch = cfg.epochs
            say(f"{resume.path} stopped early after epoch {stopped_epoch}; rewriting its summary and report")
        elif start_epoch >= cfg.epochs:
            say(f"{resume.path} has finished all {cfg.epochs} epochs already; rewriting its summary and report")
        else:
            say(f"resuming {resume.path}: {start_epoch} of {cfg.epochs} epochs done")
    # A --momentum given is held fixed; without one, one-cycle cycles it (0.95 -> 0.85 -> 0.95).
    moms = {} if cfg.momentum is None else {"moms": None}
    schedule = ([OneCycle(lr, pct_start=cfg.warmup, anneal=cfg.anneal, **moms)] if cfg.schedule == "one-cycle"
                else [])
    if main_process:  # the settings as a file `groundup train --config` reads (the lr as found, if "auto")
        with atomic_write(run_dir / "config.toml", "w", encoding="utf-8") as f:
            f.write(cfg.to_toml())
    dls = learn.dls
    say(f"training {cfg.arch} on {dls.path} ({len(dls.train.dataset)} train, {len(dls.valid.dataset)} valid images, "
        f"{len(learn.preprocessing.vocab)} {'tags' if learn.preprocessing.multi_label else 'classes'}) for {cfg.epochs} epochs; writing to {run_dir}")
    learn.fit(cfg.epochs, lr=lr if isinstance(lr, slice) else None, cbs=schedule, start_epoch=start_epoch)
    if early is not None and early.stopped_epoch is not None:
        stopped_epoch = early.stopped_epoch
    return {"recorder": recorder, "checkpoint": checkpoint, "lr_finder": lr_found, "start_epoch": start_epoch,
            "stopped_epoch": stopped_epoch, "init": init}


def _data_path(learn: Learner) -> str | None:
    """The data folder, absolute, as checkpoints record it (`groundup evaluate CHECKPOINT` reads it)."""
    path = getattr(learn.dls, "path", None)
    return str(Path(path).resolve()) if path is not None else None
