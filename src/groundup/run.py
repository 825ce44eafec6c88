"""A training run, as `groundup train` does it: its settings, its data, its folder, its files.

`train(TrainConfig(...), out=...)` builds the DataLoaders, the model and the Learner with its
callbacks, fits (or resumes from a checkpoint), and writes `metrics.csv`, `summary.json`,
`model.pt`, `best.pt`, `losses.png`, `schedule.png` and `report.html` into the run folder. The
command line (`groundup.cli`) parses arguments into a `TrainConfig` and calls `train`.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import math
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groundup import __version__
from groundup.learner import Callback

SCHEDULES = ("one-cycle", "constant")
OPTIMIZERS = ("adam", "sgd")
# Settings a resumed run may change: where the data is, how it is loaded. Everything else would
# make the resumed run a different run (and no longer equal to an uninterrupted one).
RESUME_MAY_CHANGE = ("data", "workers")


# -- the run's settings ------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint as `config`, so `--resume` can restore it).

    Args:
        data: a folder with `train/` and `val/` subfolders, a registry name (`groundup download --list`),
            or None for the data set shipped inside the package (imagenette-mini).
        epochs: number of epochs.
        lr: the learning rate (the peak of the one-cycle schedule), or "auto" to use the LR finder's
            suggestion (replaced by the number found before training starts).
        bs: training batch size (validation uses twice as many).
        size: images are squashed to `size`×`size` pixels.
        arch: a name from `groundup.nn.models.ARCHS`.
        schedule: "one-cycle" (warm up, then anneal; momentum inverse) or "constant".
        opt: "adam" (AdamW, weight decay 0.01) or "sgd" (momentum 0.9, weight decay 1e-4).
        workers: data-loading processes; None: one per CPU core (at most 8).
        seed: fixes the initial weights and the shuffling: same seed, same run.
        amp: mixed precision (bfloat16 on CPU, float16 on CUDA).
    """

    data: str | None = None
    epochs: int = 10
    lr: float | str = 1e-2
    bs: int = 64
    size: int = 64
    arch: str = "simple_cnn"
    schedule: str = "one-cycle"
    opt: str = "adam"
    workers: int | None = None
    seed: int = 42
    amp: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        from groundup.nn.models import ARCHS

        for name in ("epochs", "bs", "size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name} must be a positive integer, got {v!r}")
        if self.lr != "auto" and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                  or not 0 < self.lr < math.inf):
            raise ValueError(f"--lr must be a positive number or 'auto', got {self.lr!r}")
        check_choice("--arch", self.arch, sorted(ARCHS))
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_choice("--opt", self.opt, OPTIMIZERS)
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 0):
            raise ValueError(f"--workers must be an integer >= 0, got {self.workers!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"--seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown {what} {value!r}{hint}; choose from: {', '.join(choices)}")


# -- data ---------------------------------------------------------------------------------------------------
def shipped_dataset() -> Path:
    """The small data set inside the package: imagenette-mini (10 classes, 600 train + 200 val 64-px JPEGs)."""
    import groundup.datasets

    return Path(groundup.datasets.__file__).parent / "imagenette-mini"


def resolve_data(data: str | None) -> Path:
    """The folder for `--data`: the shipped data set (None), a registry name (downloaded once), or a path."""
    from groundup.data.download import DATASETS, untar_data

    if data is None:
        root = shipped_dataset()
    elif data in DATASETS:
        root = untar_data(data)
    else:
        root = Path(data).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data folder not found: {root} (--data takes a folder with train/ and val/ "
                                    f"subfolders, or a registry name: {', '.join(sorted(DATASETS))})")
    check_image_folder(root)
    return root


def check_image_folder(root: Path) -> None:
    """Check the `train/<label>/*.jpg`, `val/<label>/*.jpg` layout; raise ValueError naming what is wrong."""
    from groundup.data.files import get_image_files

    if not root.is_dir():
        raise ValueError(f"--data {root} is a file; it must be a folder with train/ and val/ subfolders")
    valid = next((root / n for n in ("val", "valid") if (root / n).is_dir()), None)
    missing = [n for n, p in (("train/", root / "train"), ("val/", valid)) if p is None or not p.is_dir()]
    if missing:
        raise ValueError(f"data folder {root} has no {' and no '.join(missing)} subfolder; expected "
                         f"{root}/train/<label>/*.jpg and {root}/val/<label>/*.jpg")
    for split in (root / "train", valid):
        classes = [d for d in sorted(split.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        if not classes:
            raise ValueError(f"{split} has no class folders; expected {split}/<label>/*.jpg")
        for d in classes:
            if not get_image_files(d):
                raise ValueError(f"class folder {d} is empty (no image files); add images or remove it")


# -- building the learner -----------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def opt_func_for(name: str):
    from groundup.optim import SGD, Adam

    if name == "sgd":
        return functools.partial(SGD, momentum=0.9, wd=1e-4)
    return functools.partial(Adam, wd=1e-2)


def package_versions() -> dict[str, str]:
    import matplotlib
    import PIL

    return {"groundup": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": np.__version__, "pillow": PIL.__version__, "matplotlib": matplotlib.__version__}


def new_out_dir(out: str | None, suffix: str = "") -> Path:
    """A fresh folder for a run: `out` if it is new or empty (else an error), or `runs/<date-time>[-n]`."""
    if out is not None:
        path = Path(out).expanduser()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            have = ", ".join(sorted(p.name for p in path.iterdir())[:5]) if path.is_dir() else "a file"
            raise ValueError(f"--out {path} already exists and is not empty ({have}); choose another --out "
                             f"or remove it (to continue that run: --resume {path / 'model.pt'})")
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


class _MetricsFile(Callback):
    """Rewrite metrics.csv after each epoch, so a run that is stopped still has its table on disk."""

    order = 55  # after TrackResults (50) has finished the epoch's row

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_epoch(self) -> None:
        from groundup.callbacks.tracking import TrackResults
        from groundup.report import write_metrics_csv

        write_metrics_csv(self.learn.get_cb(TrackResults).history, self.path)


def _run_dir(out: str | None, resume: str | None) -> Path:
    """The run folder: a fresh one, or (resuming) the checkpoint's own folder unless `out` names another."""
    if resume is not None:
        here = Path(resume).parent
        if out is None or Path(out).expanduser().resolve() == here.resolve():
            return here
    return new_out_dir(out)


def train(cfg: TrainConfig, out: str | None = None, resume: str | None = None, quiet: bool = False,
          argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as `groundup train` does and write the run's files; return the summary.

    Args:
        cfg: the settings (ignored when resuming, except `data` and `workers`: the checkpoint's are used).
        out: the run folder; default `runs/<date-time>` (or the checkpoint's folder when resuming).
        resume: a checkpoint written by an earlier run, to continue from its last finished epoch.
        quiet: print nothing (no table, no progress bar).
        argv: the command line, recorded in the summary.
    """
    from groundup.callbacks.checkpoint import Checkpoint
    from groundup.callbacks.distributed import DistributedCB
    from groundup.callbacks.progress import ProgressCB
    from groundup.callbacks.recorder import Recorder
    from groundup.callbacks.schedules import OneCycle
    from groundup.callbacks.setup import SetupLearnerCB
    from groundup.callbacks.tracking import TrackResults
    from groundup.checkpoint import read_checkpoint
    from groundup.data.loader import DataLoaders
    from groundup.distributed import broadcast_, cleanup, is_main_process
    from groundup.learner import Learner
    from groundup.losses import cross_entropy
    from groundup.nn.models import get_arch
    from groundup.report import write_metrics_csv, write_report, write_summary

    start = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    main_process = is_main_process()
    say = (lambda *a: None) if quiet or not main_process else functools.partial(print, flush=True)

    ckpt = None
    if resume is not None:
        ckpt = read_checkpoint(resume)
        if not isinstance(ckpt.get("config"), dict):
            read_checkpoint_config(resume)  # raises the error that says so
        cfg = TrainConfig.from_dict({**ckpt["config"], **{k: getattr(cfg, k) for k in RESUME_MAY_CHANGE
                                                          if getattr(cfg, k) is not None}})
    data_path = resolve_data(cfg.data)
    dls = DataLoaders.from_folder(data_path, size=cfg.size, bs=cfg.bs, n_workers=cfg.workers, seed=cfg.seed)
    vocab = [label for label, _ in sorted(dls.vocab.items(), key=lambda kv: kv[1])]
    if ckpt is not None and ckpt.get("vocab") != vocab:
        raise ValueError(f"the labels in {data_path} ({len(vocab)}) differ from those the checkpoint {resume} "
                         f"was trained on ({len(ckpt.get('vocab') or [])}); resume with the same --data")
    run_dir = _run_dir(out, resume) if main_process else Path(out or ".")  # only rank 0 writes

    try:
        seed_everything(cfg.seed)
        model = get_arch(cfg.arch, n_classes=len(vocab))
        cbs = [SetupLearnerCB(), DistributedCB()]
        if cfg.amp:
            from groundup.callbacks.mixed_precision import MixedPrecision

            cbs.append(MixedPrecision())
        learn = Learner(model, dls, cross_entropy, lr=1e-3 if cfg.lr == "auto" else cfg.lr,
                        opt_func=opt_func_for(cfg.opt), cbs=cbs)

        lr_found = ((ckpt.get("run") or {}).get("lr_finder")) if ckpt is not None else None
        if cfg.lr == "auto":  # before the other callbacks join: the finder's short fit is not part of the run
            found = learn.lr_find(path=run_dir / "lr_find.png" if main_process else None)
            lr = torch.tensor([found.lr], dtype=torch.float64)
            broadcast_([lr])  # every rank uses rank 0's suggestion
            lr_found = {"lr": float(lr.item()), "method": found.method}
            cfg.lr = learn.lr = lr_found["lr"]
            say(f"lr finder suggests lr={cfg.lr:.3g} ({found.method}); wrote {run_dir / 'lr_find.png'}")

        track, recorder = TrackResults(print_table=not quiet and main_process), Recorder()
        saved = Checkpoint(run_dir, best_by="valid_loss",
                           extra={"config": cfg.to_dict(), "run": {"lr_finder": lr_found}})
        for cb in (track, recorder, saved):
            learn.add_cb(cb)
        if main_process:
            learn.add_cb(_MetricsFile(run_dir / "metrics.csv"))
            if not quiet:
                learn.add_cb(ProgressCB())

        start_epoch = 0
        if ckpt is not None:
            start_epoch = learn.load(resume)["epoch"] + 1
            if start_epoch >= cfg.epochs:
                say(f"{resume} has finished all {cfg.epochs} epochs already; rewriting its summary and report")
            else:
                say(f"resuming {resume}: {start_epoch} of {cfg.epochs} epochs done")
        schedule = [OneCycle(cfg.lr)] if cfg.schedule == "one-cycle" else []
        say(f"training {cfg.arch} on {data_path} ({len(dls.train.dataset)} train, {len(dls.valid.dataset)} "
            f"valid images, {len(vocab)} classes) for {cfg.epochs} epochs; writing to {run_dir}")
        learn.fit(cfg.epochs, cbs=schedule, start_epoch=start_epoch)
        cleanup()
    except KeyboardInterrupt:
        if main_process and (run_dir / "model.pt").is_file():
            print(f"\ngroundup: interrupted; the last finished epoch is saved: continue with\n"
                  f"  groundup train --resume {run_dir / 'model.pt'}", file=sys.stderr)
        raise
    finally:
        dls.close()  # stop the loader's worker processes, whatever happened

    if not main_process:
        return {}
    history = track.history
    write_metrics_csv(history, run_dir / "metrics.csv")
    plots = {}
    if recorder.losses:
        recorder.plot_loss(run_dir / "losses.png")
        recorder.plot_lr(run_dir / "schedule.png")
        plots = {"Training loss per batch": run_dir / "losses.png",
                 "Learning rate per batch": run_dir / "schedule.png"}
    if (run_dir / "lr_find.png").is_file():
        plots["Learning rate finder"] = run_dir / "lr_find.png"
    stats = learn.get_cb(SetupLearnerCB).normalize
    final = history[-1] if history else {}
    best = min((r for r in history if r.get("valid_loss") is not None), key=lambda r: r["valid_loss"],
               default=None)
    summary = {
        "final": final,
        "best": best,
        "wall_seconds": round(time.perf_counter() - start, 3),
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in history), 3),
        "data_path": str(data_path.resolve()),
        "n_train": len(dls.train.dataset),
        "n_valid": len(dls.valid.dataset),
        "n_images": len(dls.train.dataset) + len(dls.valid.dataset),
        "vocab": vocab,
        "stats": {"mean": stats.mean.tolist(), "std": stats.std.tolist()} if stats is not None else None,
        "arch": cfg.arch, "lr": cfg.lr, "schedule": cfg.schedule, "epochs": cfg.epochs, "seed": cfg.seed,
        "lr_finder": lr_found,
        "config": cfg.to_dict(),
        "device": str(learn.get_cb(SetupLearnerCB).device),
        "started": started,
        "resumed_from": str(resume) if resume is not None else None,
        "start_epoch": start_epoch,
        "command": "groundup " + " ".join(argv) if argv is not None else None,
        "versions": package_versions(),
        "files": sorted(["metrics.csv", "summary.json", "model.pt", "report.html",
                         *(Path(p).name for p in plots.values()),
                         *(["best.pt"] if (run_dir / "best.pt").is_file() else [])]),
    }
    write_summary(summary, run_dir / "summary.json")
    write_report(run_dir / "report.html", summary, history, plots, title=f"groundup run {run_dir.name}")
    if final:
        say(f"valid_acc {final.get('valid_acc', float('nan')):.4f} after {cfg.epochs} epochs "
            f"({summary['wall_seconds']:.1f} s); wrote {run_dir}/: {', '.join(summary['files'])}")
    say(f"open {run_dir / 'report.html'} in a browser for the report")
    return summary


def read_checkpoint_config(path: str) -> dict[str, Any]:
    """The run settings (`config`) stored in a checkpoint written by `groundup train`."""
    from groundup.checkpoint import CheckpointError, read_checkpoint

    config = read_checkpoint(path).get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has no run settings (it was not written by groundup "
                              f"train); continue it in Python with Learner.load")
    return config
