"""A training run, as `groundup train` does it, in three steps: build the learner, fit, write the run folder.

    build_learner(cfg)        data (a folder, a registry name or the shipped set) -> ImageDataLoaders,
                              the model from `cfg.arch`, and a Learner with SetupLearnerCB,
                              DistributedTraining and (with `cfg.amp`) MixedPrecision; shared by
                              `train` and `lr-find`
    fit_run(learn, cfg, ...)  the LR finder when `lr="auto"`, the callbacks of a run (results,
                              recorder, checkpoints, metrics.csv after every epoch, steps.csv, early
                              stopping, clipping, accumulation, TensorBoard, progress bar),
                              resuming, and `fit`
    write_run_folder(...)     metrics.csv, summary.json, losses.png, schedule.png, the interpretation of
                              the validation set (confusion_matrix.png, top_losses.png, per_class.csv)
                              and report.html

`train(cfg, out=..., resume=...)` does all three; the command line (`groundup.commands.train`)
parses its flags into a `TrainConfig` and calls it.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groundup._version import __version__
from groundup.atomic import remove_stale_temp_files
from groundup.callbacks.checkpointing import Checkpoint
from groundup.callbacks.core import Callback
from groundup.callbacks.distributed import DistributedTraining
from groundup.callbacks.early_stopping import EarlyStopping
from groundup.callbacks.gradient_accumulation import GradientAccumulation
from groundup.callbacks.gradient_clipping import GradientClipping
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.progress import ProgressBar
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.step_logger import StepLogger
from groundup.callbacks.tensorboard import TensorBoardLogger
from groundup.callbacks.terminate_on_nan import NonFiniteLossError, TerminateOnNaN
from groundup.callbacks.tracking import TrackResults
from groundup.checkpoint import CheckpointError, checkpoint_preprocessing, read_checkpoint
from groundup.checks import check_int
from groundup.config import RESUME_MAY_CHANGE, TrainConfig, opt_func_for
from groundup.data.augment import BatchAugment
from groundup.data.download import DATASETS, DownloadError, untar_data
from groundup.data.folder import ImageDataLoaders, check_image_folder
from groundup.deprecation import moved_names
from groundup.devices import resolve_device
from groundup.disk import DiskFullError
from groundup.errors import note_run_dir
from groundup.inference import model_device
from groundup.interpret import Interpretation
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.machine import describe_device
from groundup.nn.models import get_arch
from groundup.process_group import broadcast_, cleanup, get_world_size, is_main_process, launched_by_torchrun
from groundup.report import (
    write_metrics_csv,
    write_per_class_csv,
    write_report,
    write_summary,
    write_text_atomic,
)
from groundup.rng import seed_everything
from groundup.training_plot import plot_training

__all__ = [
    "build_learner",
    "check_out_dir",
    "command_line",
    "effective_settings",
    "fit_run",
    "interpret_validation",
    "new_out_dir",
    "read_checkpoint_config",
    "resolve_data",
    "shipped_dataset",
    "train",
    "write_run_folder",
]


log = logging.getLogger(__name__)


# -- data ---------------------------------------------------------------------------------------------------
def shipped_dataset() -> Path:
    """The small data set inside the package: imagenette-mini (10 classes, 600 train + 200 val 64-px JPEGs)."""
    import groundup.datasets

    return Path(groundup.datasets.__file__).parent / "imagenette-mini"


def resolve_data(data: str | None) -> Path:
    """The folder for `--data`: the shipped data set (None), a registry name (downloaded once), or a path."""
    if data is None:
        root = shipped_dataset()
    elif data in DATASETS:
        try:
            root = untar_data(data)
        except DownloadError as e:
            raise e.with_offline_hint("set GROUNDUP_HOME to where it is cached, or pass the extracted folder "
                                      "as --data FOLDER") from e
    else:
        root = Path(data).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data folder not found: {root} (--data takes a folder with train/ and val/ "
                                    f"subfolders, or a registry name: {', '.join(sorted(DATASETS))})")
    return check_image_folder(root)


# -- 1. build -----------------------------------------------------------------------------------------------
def build_learner(cfg: TrainConfig, device: str | torch.device | None = None) -> Learner:
    """The Learner a run trains: its loaders, model (seeded by `cfg.seed`), loss, optimizer and device callbacks.

    The learner's callbacks are `SetupLearnerCB` (device, normalization), `DistributedTraining` (a no-op
    unless started by torchrun) and, with `cfg.amp`, `MixedPrecision`. `learn.lr` is `cfg.lr`
    (1e-3 until the LR finder replaces it when `cfg.lr == "auto"`). Call `learn.dls.close()` when done.
    The device is `device` if given, else `cfg.device` (checked first: a device this machine lacks
    is a ValueError listing those it has).
    """
    device = resolve_device(cfg.device) if device is None else device
    augment = (BatchAugment(cfg.train_size or cfg.size, scale=(cfg.crop_scale, 1.0), seed=cfg.seed) if cfg.augment
               else None)
    dls = ImageDataLoaders.from_folder(resolve_data(cfg.data), size=cfg.size, bs=cfg.bs,
                                       num_workers=cfg.num_workers, seed=cfg.seed, skip_corrupt=cfg.skip_corrupt,
                                       augment=augment)
    if cfg.compile and len(dls.train.dataset) >= cfg.bs:
        dls.train.drop_last = True  # a last, smaller batch would make torch.compile compile the model again
    seed_everything(cfg.seed)
    model = get_arch(cfg.arch, n_classes=len(dls.preprocessing.vocab))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    cbs: list[Callback] = [SetupLearnerCB(device), DistributedTraining()]
    if cfg.amp:
        cbs.append(MixedPrecision())
    loss = functools.partial(cross_entropy, label_smoothing=cfg.label_smoothing) if cfg.label_smoothing else cross_entropy
    learn = Learner(model, dls, loss, lr=1e-3 if cfg.lr == "auto" else cfg.lr,
                    opt_func=opt_func_for(cfg.opt, wd=cfg.wd, momentum=cfg.momentum, wd_norms=cfg.wd_norms),
                    cbs=cbs)
    return learn.compile() if cfg.compile else learn


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The run settings (`config`) stored in a checkpoint written by `groundup train`."""
    config = read_checkpoint(path).get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has no run settings (it was not written by groundup "
                              f"train); continue it in Python with Learner.load")
    return config


def resumed_config(resume: str | Path, cfg: TrainConfig, epochs: int | None = None) -> TrainConfig:
    """The checkpoint's settings, with those a resumed run may change (`RESUME_MAY_CHANGE`) taken from `cfg`.

    `epochs`, if given, is the resumed run's new number of epochs: a constant schedule can be
    extended; a one-cycle schedule cannot (ValueError saying why).
    """
    saved = read_checkpoint_config(resume)
    values = {**saved, **{k: getattr(cfg, k) for k in RESUME_MAY_CHANGE if getattr(cfg, k) is not None}}
    before = TrainConfig.from_dict(saved)
    if epochs is not None and epochs != before.epochs:
        if before.schedule != "constant":
            raise ValueError(f"--epochs {epochs} cannot change the resumed run's {before.epochs} epochs: its "
                             f"{before.schedule} schedule sets each batch's lr from the progress through all "
                             f"{before.epochs}, so the epochs done belong to that cycle (runs with --schedule "
                             f"constant can be extended); start a new run for {epochs} epochs")
        values["epochs"] = check_int("", "--epochs", epochs)
    return TrainConfig.from_dict(values)


# -- 2. fit -------------------------------------------------------------------------------------------------
class _MetricsFile(Callback):
    """Rewrite metrics.csv after each epoch, so a run that is stopped still has its table on disk."""

    # After TrackResults (50) has finished the epoch's row and Checkpoint (60) has saved the epoch:
    # metrics.csv never lists an epoch whose checkpoint was not written (a full disk, a kill).
    order = 65

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_epoch(self) -> None:
        write_metrics_csv(self.learn.history, self.path)


def fit_run(learn: Learner, cfg: TrainConfig, run_dir: Path, resume: str | Path | None = None,
            quiet: bool = False, say: Callable[..., None] | None = None) -> dict[str, Any]:
    """Fit `learn` as a run does (see the module docstring); return facts for the summary.

    `quiet` leaves out the table and the progress bar; messages go to `say` (default: the
    "groundup.run" logger's `info`).

    Returns:
        `{"recorder", "checkpoint", "lr_finder", "start_epoch", "stopped_epoch"}`: the per-batch record,
        the `Checkpoint` callback (which epoch `best.pt` holds), the LR
        finder's result (None unless `cfg.lr == "auto"`, or resumed from a run that used it), the
        first epoch run, and the epoch after which early stopping ended the run (None if it did not).
    """
    main_process = is_main_process()
    say = say or log.info
    lr_found = None
    if resume is not None:
        lr_found = (read_checkpoint(resume).get("run") or {}).get("lr_finder")
    if cfg.lr == "auto":  # before the other callbacks join: the finder's short fit is not part of the run
        found = learn.lr_find(path=run_dir / "lr_find.png" if main_process else None)
        lr = torch.tensor([found.lr], dtype=torch.float64)
        broadcast_([lr])  # every rank uses rank 0's suggestion
        lr_found = {"lr": float(lr.item()), "method": found.method}
        cfg.lr = learn.lr = lr_found["lr"]
        say(f"lr finder suggests lr={cfg.lr:.3g} ({found.method}); wrote {run_dir / 'lr_find.png'}")

    recorder = Recorder()
    checkpoint = Checkpoint(run_dir, best_by=cfg.monitor, extra={"config": cfg.to_dict(),
                                                                 "run": {"lr_finder": lr_found}})
    cbs: list[Callback] = [TerminateOnNaN(), TrackResults(print_table=not quiet and main_process), recorder,
                           checkpoint]
    early = EarlyStopping(cfg.monitor, cfg.patience) if cfg.patience is not None else None
    if early is not None:
        cbs.append(early)
    if cfg.clip is not None:
        cbs.append(GradientClipping(cfg.clip))
    if cfg.accumulate > 1:
        cbs.append(GradientAccumulation(cfg.accumulate))
    if main_process:
        cbs += [_MetricsFile(run_dir / "metrics.csv"), StepLogger(run_dir / "steps.csv")]
        if cfg.tensorboard:
            cbs.append(TensorBoardLogger(run_dir / "tensorboard", hparams=cfg.to_dict()))
        if not quiet:
            cbs.append(ProgressBar())
    for cb in cbs:
        learn.add_cb(cb)

    start_epoch, stopped_epoch = 0, None
    if resume is not None:
        start_epoch = learn.load(resume)["epoch"] + 1
        stopped_epoch = early.stop_epoch(learn.history) if early is not None else None
        if stopped_epoch is not None:  # it stopped early: it is finished
            start_epoch = cfg.epochs
            say(f"{resume} stopped early after epoch {stopped_epoch}; rewriting its summary and report")
        elif start_epoch >= cfg.epochs:
            say(f"{resume} has finished all {cfg.epochs} epochs already; rewriting its summary and report")
        else:
            say(f"resuming {resume}: {start_epoch} of {cfg.epochs} epochs done")
    # A --momentum given is held fixed; without one, one-cycle cycles it (0.95 -> 0.85 -> 0.95).
    moms = {} if cfg.momentum is None else {"moms": None}
    schedule = ([OneCycle(cfg.lr, pct_start=cfg.warmup, anneal=cfg.anneal, **moms)] if cfg.schedule == "one-cycle"
                else [])
    if main_process:  # the settings as a file `groundup train --config` reads (the lr as found, if "auto")
        write_text_atomic(cfg.to_toml(), run_dir / "config.toml")
    dls = learn.dls
    say(f"training {cfg.arch} on {dls.path} ({len(dls.train.dataset)} train, {len(dls.valid.dataset)} valid images, "
        f"{len(learn.preprocessing.vocab)} classes) for {cfg.epochs} epochs; writing to {run_dir}")
    learn.fit(cfg.epochs, cbs=schedule, start_epoch=start_epoch)
    if early is not None and early.stopped_epoch is not None:
        stopped_epoch = early.stopped_epoch
    return {"recorder": recorder, "checkpoint": checkpoint, "lr_finder": lr_found, "start_epoch": start_epoch,
            "stopped_epoch": stopped_epoch}


# -- 3. write -----------------------------------------------------------------------------------------------
def package_versions() -> dict[str, str]:
    import matplotlib
    import PIL

    return {"groundup": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": np.__version__, "pillow": PIL.__version__, "matplotlib": matplotlib.__version__}


def check_out_dir(out: str | None) -> None:
    """Raise ValueError if `out` is a file or a folder that is not empty (creates nothing: check before working)."""
    if out is None:
        return
    path = Path(out).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        have = ", ".join(sorted(p.name for p in path.iterdir())[:5]) if path.is_dir() else "a file"
        raise ValueError(f"--out {path} already exists and is not empty ({have}); choose another --out "
                         f"or remove it (to continue that run: --resume {path / 'model.pt'})")


def new_out_dir(out: str | None, suffix: str = "") -> Path:
    """A fresh folder for a run: `out` if it is new or empty (else an error), or `runs/<date-time>[-n]`."""
    if out is not None:
        check_out_dir(out)
        path = Path(out).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + suffix
    for n in range(1000):
        path = Path("runs") / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise ValueError(f"could not find a free folder name runs/{stamp}-N; pass --out")


def command_line(argv: Sequence[str]) -> str:
    """The command as typed: `groundup train ...`, `python -m groundup train ...`, or for a torchrun run
    `torchrun --nnodes=N --nproc_per_node=M -m groundup train ...` (rebuilt from torchrun's variables)."""
    if launched_by_torchrun():
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        nodes = max(1, get_world_size() // max(local, 1))
        prog = f"torchrun --nnodes={nodes} --nproc_per_node={local} -m groundup"
    elif getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None) == "groundup.__main__":
        prog = "python -m groundup"
    else:
        prog = "groundup"
    return f"{prog} {shlex.join(argv)}".strip()


def effective_settings(cfg: TrainConfig, learn: Learner) -> dict[str, str]:
    """The run's settings as the report shows them: every value spelled out (what None stood for
    included), defaults marked `(default)`."""
    defaults, shown = TrainConfig().to_dict(), {}
    for key, value in cfg.to_dict().items():
        text = f"{value:.4g}" if key == "lr" and isinstance(value, float) else str(value)
        if key == "data" and value is None:
            text = "imagenette-mini, shipped with groundup (default)"
        elif key == "num_workers" and value is None:
            workers = getattr(learn.dls.train, "num_workers", "?")
            text = f"{workers} (default: one per usable CPU core, at most 8)"
        elif value == defaults[key]:
            text += " (default)"
        shown[key] = text
    return shown


def interpret_validation(learn: Learner, tta: bool = False) -> Interpretation:
    """The `Interpretation` of the whole validation set (also on rank 0 after a distributed run); with
    `tta`, of the predictions with flip test-time augmentation."""
    valid = learn.dls.valid
    if getattr(valid, "world_size", 1) > 1 and hasattr(valid, "shard"):
        valid.shard(0, 1)  # the run is over: rank 0 looks at every validation image alone
    return Interpretation.from_learner(learn, valid, tta=tta)


def _best(history: Sequence[dict[str, Any]],
          checkpoint: Checkpoint | None) -> tuple[dict[str, Any] | None, str, str | None]:
    """The best epoch's row, the column it was chosen by and the rule as a sentence (None: no best.pt)."""
    if checkpoint is not None and checkpoint.best_by is not None:
        by = checkpoint.best_by
        rule = f"best.pt holds the epoch with the {'lowest' if by.endswith('loss') else 'highest'} {by}"
        row = next((r for r in history if r.get("epoch") == checkpoint.best_epoch), None)
        return row, by, rule
    row = min((r for r in history if r.get("valid_loss") is not None), key=lambda r: r["valid_loss"],
              default=None)
    return row, "valid_loss", None


def write_run_folder(learn: Learner, cfg: TrainConfig, run_dir: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv, the plots, the interpretation, summary.json and report.html of a finished fit;
    return the summary.

    The interpretation looks at the validation set with the model after the last epoch (the one in
    `model.pt`): `confusion_matrix.png`, `top_losses.png` and `per_class.csv`.

    Args:
        learn: the learner after `fit_run`.
        cfg: the run's settings.
        run_dir: the run folder.
        facts: what `fit_run` returned, plus `data_path`, `wall_seconds`, `started`, `resumed_from`
            and `command`.
    """
    history, recorder = learn.history, facts["recorder"]
    write_metrics_csv(history, run_dir / "metrics.csv")
    best, best_by, best_rule = _best(history, facts.get("checkpoint"))
    plots = {}
    if recorder.losses:
        plot_training(recorder.losses, history, run_dir / "losses.png", smooth=recorder.smooth_losses,
                      best_epoch=best.get("epoch") if best and best_rule else None,
                      best_rule=f"{'lowest' if best_by.endswith('loss') else 'highest'} {best_by}")
        plots["Training loss per batch; validation loss and accuracy per epoch"] = run_dir / "losses.png"
    interp = interpret_validation(learn, tta=cfg.tta)
    interp.plot_confusion_matrix(run_dir / "confusion_matrix.png")
    try:
        interp.plot_top_losses(9, run_dir / "top_losses.png")
    except ValueError as e:  # which image is which is not known (skipped images, found by worker processes)
        log.warning("no top_losses.png: %s", e)
    per_class = interp.per_class()
    write_per_class_csv(per_class, run_dir / "per_class.csv")
    plots["Confusion matrix of the validation set (rows: actual class, columns: predicted)"] = \
        run_dir / "confusion_matrix.png"
    if (run_dir / "top_losses.png").is_file():
        plots["Top losses: the validation images the model got most wrong"] = run_dir / "top_losses.png"
    if recorder.losses:
        recorder.plot_lr(run_dir / "schedule.png")
        plots["Learning rate per batch"] = run_dir / "schedule.png"
    if (run_dir / "lr_find.png").is_file():
        plots["Learning rate finder"] = run_dir / "lr_find.png"
    pre, dls = learn.preprocessing, learn.dls
    model = learn.unwrapped_model
    final = history[-1] if history else {}
    world = get_world_size()
    summary = {
        "final": final,
        "tta_acc": round(interp.accuracy, 6) if cfg.tta else None,
        "best": best,
        "best_by": best_by,
        "best_rule": best_rule,
        "monitor": cfg.monitor,
        "stopped_epoch": facts.get("stopped_epoch"),
        "wall_seconds": facts["wall_seconds"],
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in history), 3),
        "epoch_seconds": [round(r.get("seconds", 0.0), 3) for r in history],
        "data_path": str(Path(facts["data_path"]).resolve()),
        "n_train": len(dls.train.dataset),
        "n_valid": len(dls.valid.dataset),
        "n_images": len(dls.train.dataset) + len(dls.valid.dataset),
        "vocab": pre.vocab,
        "class_names": pre.class_names,
        "stats": {"mean": pre.mean.tolist(), "std": pre.std.tolist()},
        "arch": cfg.arch, "lr": cfg.lr, "schedule": cfg.schedule, "epochs": cfg.epochs, "seed": cfg.seed,
        "lr_finder": facts["lr_finder"],
        "config": cfg.to_dict(),
        "settings": effective_settings(cfg, learn),
        "device": str(model_device(model)),
        "machine": describe_device(model_device(model)),
        "n_params": sum(p.numel() for p in model.parameters()),
        "world_size": world,
        "global_batch": cfg.bs * world,
        "started": facts["started"],
        "resumed_from": facts["resumed_from"],
        "start_epoch": facts["start_epoch"],
        "command": facts["command"],
        "versions": package_versions(),
        "per_class": per_class,
        "per_class_note": f"On the {len(interp)} validation images, with the model after the last epoch "
                          f"(model.pt){' and flip test-time augmentation' if cfg.tta else ''}: accuracy "
                          f"{interp.accuracy:.4f}. A class's accuracy is the share of "
                          f"its images predicted correctly (the same number as its recall).",
        "most_confused": interp.most_confused()[:20],
        "files": sorted(["metrics.csv", "summary.json", "model.pt", "report.html", "per_class.csv",
                         *(name for name in ("steps.csv", "config.toml") if (run_dir / name).is_file()),
                         *(Path(p).name for p in plots.values()),
                         *(["best.pt"] if (run_dir / "best.pt").is_file() else [])]),
    }
    write_summary(summary, run_dir / "summary.json")
    write_report(summary, history, plots, run_dir / "report.html", title=f"groundup run {run_dir.name}")
    return summary


# -- all three ----------------------------------------------------------------------------------------------
def _what_is_kept(learn: Learner, run_dir: Path) -> str:
    """Which checkpoints a run that stopped early left, for its error message."""
    done = [r["epoch"] for r in learn.history if "epoch" in r]
    if not done or not (run_dir / "model.pt").is_file():
        return f"no checkpoint was written to {run_dir} (no epoch finished)"
    best = ", best.pt the best one" if (run_dir / "best.pt").is_file() else ""
    return f"{run_dir / 'model.pt'} keeps the last good epoch ({done[-1]}){best}"


def _resumes_in_place(out: str | None, resume: str | None) -> bool:
    """True when the run writes into its checkpoint's own folder (resuming, with no other `out`)."""
    if resume is None:
        return False
    here = Path(resume).parent
    return out is None or Path(out).expanduser().resolve() == here.resolve()


def _run_dir(out: str | None, resume: str | None) -> Path:
    """The run folder: a fresh one, or (resuming) the checkpoint's own folder unless `out` names another."""
    if _resumes_in_place(out, resume):
        run_dir = Path(resume).parent
        remove_stale_temp_files(run_dir)  # what a kill during an earlier write left behind
        return run_dir
    return new_out_dir(out)


def train(cfg: TrainConfig, out: str | None = None, resume: str | None = None, quiet: bool = False,
          argv: Sequence[str] | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Train as `groundup train` does and write the run's files; return the summary.

    Args:
        cfg: the settings (ignored when resuming, except `data` and `num_workers`: the checkpoint's are used).
        out: the run folder; default `runs/<date-time>` (or the checkpoint's folder when resuming).
        resume: a checkpoint written by an earlier run, to continue from its last finished epoch. A run
            that has finished all its epochs is left alone (its summary is returned, nothing is written).
        quiet: no table, no progress bar. The other messages are log records of the "groundup.run"
            logger (see `groundup.logs`), shown by the command line and routed by the application.
        argv: the command line, recorded in the summary.
        epochs: when resuming, a new number of epochs (a constant schedule can be extended; see
            `resumed_config`).
    """
    start = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    main_process = is_main_process()
    say = log.info if main_process else (lambda *a: None)
    saved = None  # the checkpoint being resumed, read once here
    if resume is not None:
        cfg = resumed_config(resume, cfg, epochs=epochs)
        saved = read_checkpoint(resume)
        if saved["epoch"] + 1 >= cfg.epochs:  # nothing left to train: touch nothing
            here = Path(resume).parent
            if out is not None and Path(out).expanduser().resolve() != here.resolve():
                check_out_dir(out)  # the same answer as for a run with epochs left
            remove_stale_temp_files(here)  # what a kill during an earlier write left behind; results stay as they are
            say(f"{resume} has finished all {cfg.epochs} epochs already; nothing to do ({here} is left as "
                f"it is; to train for longer, start a new run)")
            summary = here / "summary.json"
            return json.loads(summary.read_text()) if summary.is_file() else {}
    if main_process and not _resumes_in_place(out, resume):
        check_out_dir(out)  # a bad --out is refused before any work (or any cache file) is done
    learn = build_learner(cfg)
    data_path = learn.dls.path
    try:
        pre = checkpoint_preprocessing(saved) if saved is not None else None
        if pre is not None and pre.vocab != learn.preprocessing.vocab:
            raise ValueError(f"the labels in {data_path} ({len(learn.preprocessing.vocab)}) differ from those "
                             f"the checkpoint {resume} was trained on ({len(pre.vocab or [])}); resume with "
                             f"the same --data")
        run_dir = _run_dir(out, resume) if main_process else Path(out or ".")  # only rank 0 writes
        try:
            facts = fit_run(learn, cfg, run_dir, resume=resume, quiet=quiet, say=say)
            cleanup()
        except KeyboardInterrupt:
            if main_process and (run_dir / "model.pt").is_file():
                print(f"\ngroundup: interrupted; the last finished epoch is saved: continue with\n"
                      f"  groundup train --resume {run_dir / 'model.pt'}", file=sys.stderr)
            raise
        except DiskFullError as e:
            resume_hint = (f", then continue the run with: groundup train --resume {run_dir / 'model.pt'}"
                           if main_process and (run_dir / "model.pt").is_file() else "")
            raise DiskFullError(f"{e}{resume_hint}") from e
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"{e}; {_what_is_kept(learn, run_dir)}: start a new run with a lower "
                                     f"--lr (this one: {cfg.lr:g}; a resumed run keeps its lr)") from e
        except Exception as e:
            if main_process:
                note_run_dir(e, run_dir)  # an unexpected error's traceback goes into the run folder
            raise
    finally:
        learn.dls.close()  # stop the loader's worker processes, whatever happened
    if not main_process:
        return {}
    facts.update(data_path=data_path, wall_seconds=round(time.perf_counter() - start, 3), started=started,
                 resumed_from=str(resume) if resume is not None else None,
                 command=command_line(argv) if argv is not None else None)
    try:
        summary = write_run_folder(learn, cfg, run_dir, facts)
    finally:
        learn.dls.close()  # the interpretation ran the validation loader again
    final, best = summary["final"], summary["best"]
    if final:
        ran = len(learn.history)
        after = (f"after {ran} epochs" if summary["stopped_epoch"] is None
                 else f"after {ran} of {cfg.epochs} epochs (stopped early: {cfg.monitor} had not improved "
                      f"for {cfg.patience} epochs)")
        tta = f" (with flip TTA: {summary['tta_acc']:.4f})" if summary.get("tta_acc") is not None else ""
        say(f"valid_acc {final.get('valid_acc', float('nan')):.4f}{tta} {after} "
            f"({summary['wall_seconds']:.1f} s); wrote {run_dir}/: {', '.join(summary['files'])}")
    if best is not None and (run_dir / "best.pt").is_file():
        say(f"best.pt is epoch {best['epoch']}, by {cfg.monitor}: {best[cfg.monitor]:.4f}")
    say(f"open {run_dir / 'report.html'} in a browser for the report")
    return summary


# Names that lived here before 0.2 and moved to the module of their concept.
__getattr__ = moved_names(__name__, {"SCHEDULES": "groundup.config.SCHEDULES",
                                     "OPTIMIZERS": "groundup.config.OPTIMIZERS",
                                     "check_choice": "groundup.checks.check_choice"})
