"""A training run, as `groundup train` does it, in three steps: build the learner, fit, write the run folder.

    build_learner(cfg)        data (a folder, a registry name or the shipped set) -> ImageDataLoaders,
                              the model from `cfg.arch`, and a Learner with SetupLearnerCB,
                              DistributedTraining and (with `cfg.amp`) MixedPrecision; shared by
                              `train` and `lr-find`
    fit_run(learn, cfg, ...)  the LR finder when `lr="auto"`, the callbacks of a run (results,
                              recorder, checkpoints, metrics.csv after every epoch, progress bar),
                              resuming from a checkpoint, and `fit`
    write_run_folder(...)     metrics.csv, summary.json, losses.png, schedule.png and report.html

`train(cfg, out=..., resume=...)` does all three; the command line (`groundup.commands.train`)
parses its flags into a `TrainConfig` and calls it.
"""

from __future__ import annotations

import datetime
import functools
import platform
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
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.progress import ProgressBar
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.terminate_on_nan import NonFiniteLossError, TerminateOnNaN
from groundup.callbacks.tracking import TrackResults
from groundup.checkpoint import CheckpointError, checkpoint_preprocessing, read_checkpoint
from groundup.config import RESUME_MAY_CHANGE, TrainConfig, opt_func_for
from groundup.data.download import DATASETS, untar_data
from groundup.data.folder import ImageDataLoaders, check_image_folder
from groundup.deprecation import moved_names
from groundup.disk import DiskFullError
from groundup.errors import note_run_dir
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import get_arch
from groundup.process_group import broadcast_, cleanup, is_main_process
from groundup.report import write_metrics_csv, write_report, write_summary
from groundup.rng import seed_everything

__all__ = [
    "build_learner",
    "check_out_dir",
    "fit_run",
    "new_out_dir",
    "read_checkpoint_config",
    "resolve_data",
    "shipped_dataset",
    "train",
    "write_run_folder",
]


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
        root = untar_data(data)
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
    """
    dls = ImageDataLoaders.from_folder(resolve_data(cfg.data), size=cfg.size, bs=cfg.bs,
                                       num_workers=cfg.num_workers, seed=cfg.seed, skip_corrupt=cfg.skip_corrupt)
    seed_everything(cfg.seed)
    model = get_arch(cfg.arch, n_classes=len(dls.preprocessing.vocab))
    cbs: list[Callback] = [SetupLearnerCB(device), DistributedTraining()]
    if cfg.amp:
        cbs.append(MixedPrecision())
    return Learner(model, dls, cross_entropy, lr=1e-3 if cfg.lr == "auto" else cfg.lr,
                   opt_func=opt_func_for(cfg.opt), cbs=cbs)


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The run settings (`config`) stored in a checkpoint written by `groundup train`."""
    config = read_checkpoint(path).get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has no run settings (it was not written by groundup "
                              f"train); continue it in Python with Learner.load")
    return config


def resumed_config(resume: str | Path, cfg: TrainConfig) -> TrainConfig:
    """The checkpoint's settings, with those a resumed run may change (`RESUME_MAY_CHANGE`) taken from `cfg`."""
    saved = read_checkpoint_config(resume)
    return TrainConfig.from_dict({**saved, **{k: getattr(cfg, k) for k in RESUME_MAY_CHANGE
                                              if getattr(cfg, k) is not None}})


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
            quiet: bool = False, say: Callable[..., None] = print) -> dict[str, Any]:
    """Fit `learn` as a run does (see the module docstring); return facts for the summary.

    Returns:
        `{"recorder", "lr_finder", "start_epoch"}`: the per-batch record, the LR finder's result
        (None unless `cfg.lr == "auto"`, or resumed from a run that used it) and the first epoch run.
    """
    main_process = is_main_process()
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
    cbs: list[Callback] = [TerminateOnNaN(), TrackResults(print_table=not quiet and main_process), recorder,
                           Checkpoint(run_dir, best_by="valid_loss",
                                      extra={"config": cfg.to_dict(), "run": {"lr_finder": lr_found}})]
    if main_process:
        cbs.append(_MetricsFile(run_dir / "metrics.csv"))
        if not quiet:
            cbs.append(ProgressBar())
    for cb in cbs:
        learn.add_cb(cb)

    start_epoch = 0
    if resume is not None:
        start_epoch = learn.load(resume)["epoch"] + 1
        if start_epoch >= cfg.epochs:
            say(f"{resume} has finished all {cfg.epochs} epochs already; rewriting its summary and report")
        else:
            say(f"resuming {resume}: {start_epoch} of {cfg.epochs} epochs done")
    schedule = [OneCycle(cfg.lr)] if cfg.schedule == "one-cycle" else []
    dls = learn.dls
    say(f"training {cfg.arch} on {dls.path} ({len(dls.train.dataset)} train, {len(dls.valid.dataset)} valid images, "
        f"{len(learn.preprocessing.vocab)} classes) for {cfg.epochs} epochs; writing to {run_dir}")
    learn.fit(cfg.epochs, cbs=schedule, start_epoch=start_epoch)
    return {"recorder": recorder, "lr_finder": lr_found, "start_epoch": start_epoch}


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


def write_run_folder(learn: Learner, cfg: TrainConfig, run_dir: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv, the plots, summary.json and report.html of a finished fit; return the summary.

    Args:
        learn: the learner after `fit_run`.
        cfg: the run's settings.
        run_dir: the run folder.
        facts: what `fit_run` returned, plus `data_path`, `wall_seconds`, `started`, `resumed_from`
            and `command`.
    """
    history, recorder = learn.history, facts["recorder"]
    write_metrics_csv(history, run_dir / "metrics.csv")
    plots = {}
    if recorder.losses:
        recorder.plot_loss(run_dir / "losses.png")
        recorder.plot_lr(run_dir / "schedule.png")
        plots = {"Training loss per batch": run_dir / "losses.png",
                 "Learning rate per batch": run_dir / "schedule.png"}
    if (run_dir / "lr_find.png").is_file():
        plots["Learning rate finder"] = run_dir / "lr_find.png"
    pre, dls = learn.preprocessing, learn.dls
    final = history[-1] if history else {}
    best = min((r for r in history if r.get("valid_loss") is not None), key=lambda r: r["valid_loss"],
               default=None)
    summary = {
        "final": final,
        "best": best,
        "wall_seconds": facts["wall_seconds"],
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in history), 3),
        "data_path": str(Path(facts["data_path"]).resolve()),
        "n_train": len(dls.train.dataset),
        "n_valid": len(dls.valid.dataset),
        "n_images": len(dls.train.dataset) + len(dls.valid.dataset),
        "vocab": pre.vocab,
        "stats": {"mean": pre.mean.tolist(), "std": pre.std.tolist()},
        "arch": cfg.arch, "lr": cfg.lr, "schedule": cfg.schedule, "epochs": cfg.epochs, "seed": cfg.seed,
        "lr_finder": facts["lr_finder"],
        "config": cfg.to_dict(),
        "device": str(next(iter(learn.model.parameters())).device),
        "started": facts["started"],
        "resumed_from": facts["resumed_from"],
        "start_epoch": facts["start_epoch"],
        "command": facts["command"],
        "versions": package_versions(),
        "files": sorted(["metrics.csv", "summary.json", "model.pt", "report.html",
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
          argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as `groundup train` does and write the run's files; return the summary.

    Args:
        cfg: the settings (ignored when resuming, except `data` and `num_workers`: the checkpoint's are used).
        out: the run folder; default `runs/<date-time>` (or the checkpoint's folder when resuming).
        resume: a checkpoint written by an earlier run, to continue from its last finished epoch.
        quiet: print nothing (no table, no progress bar).
        argv: the command line, recorded in the summary.
    """
    start = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    main_process = is_main_process()
    say = (lambda *a: None) if quiet or not main_process else functools.partial(print, flush=True)
    if resume is not None:
        cfg = resumed_config(resume, cfg)
    if main_process and not _resumes_in_place(out, resume):
        check_out_dir(out)  # a bad --out is refused before any work (or any cache file) is done
    learn = build_learner(cfg)
    data_path = learn.dls.path
    try:
        if resume is not None:
            saved = checkpoint_preprocessing(read_checkpoint(resume))
            if saved is not None and saved.vocab != learn.preprocessing.vocab:
                raise ValueError(f"the labels in {data_path} ({len(learn.preprocessing.vocab)}) differ from those "
                                 f"the checkpoint {resume} was trained on ({len(saved.vocab or [])}); resume with "
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
                 command="groundup " + " ".join(argv) if argv is not None else None)
    summary = write_run_folder(learn, cfg, run_dir, facts)
    final = summary["final"]
    if final:
        say(f"valid_acc {final.get('valid_acc', float('nan')):.4f} after {cfg.epochs} epochs "
            f"({summary['wall_seconds']:.1f} s); wrote {run_dir}/: {', '.join(summary['files'])}")
    say(f"open {run_dir / 'report.html'} in a browser for the report")
    return summary


# Names that lived here before 0.2 and moved to the module of their concept.
__getattr__ = moved_names(__name__, {"SCHEDULES": "groundup.config.SCHEDULES",
                                     "OPTIMIZERS": "groundup.config.OPTIMIZERS",
                                     "check_choice": "groundup.checks.check_choice"})
