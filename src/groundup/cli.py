"""The `groundup` command line: `train`, `lr-find`, `download` and `predict`.

    groundup train                                  # the data set shipped in the package; well under 2 minutes
    groundup train --data imagenette-160 --arch resnet --epochs 5 --lr auto
    groundup train --resume runs/20240501-093000/model.pt     # continue a run exactly where it stopped
    groundup lr-find --arch resnet
    groundup download --list
    groundup predict runs/20240501-093000/model.pt photo.jpg --top 3

`python -m groundup ...` is the same command (and what `torchrun -m groundup train` runs).

A run writes into its own folder (`--out`, default `runs/<date-time>`): `metrics.csv`,
`summary.json`, `model.pt` (the checkpoint, after every epoch), `best.pt` (the epoch with the lowest
validation loss), `losses.png`, `schedule.png` and `report.html`. An `--out` folder that already
holds files is refused (exit status 2), unless it is the folder of the run being resumed: nothing
an earlier run wrote is ever overwritten by a new one.

Mistakes in what was passed (a missing folder, an unknown architecture, a non-positive lr, an
unreadable image, a truncated checkpoint, ...) print one line, `groundup: error: ...`, and exit with
status 2. Set `GROUNDUP_DEBUG=1` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import functools
import json
import math
import os
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

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "build_parser",
    "check_image_folder",
    "main",
    "resolve_data",
    "shipped_dataset",
    "train",
]

SCHEDULES = ("one-cycle", "constant")
OPTIMIZERS = ("adam", "sgd")
# Settings a resumed run may change: where the data is, how it is loaded. Everything else would
# make the resumed run a different run (and no longer equal to an uninterrupted one).
_RESUME_MAY_CHANGE = ("data", "workers")


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
        _check_choice("--arch", self.arch, sorted(ARCHS))
        _check_choice("--schedule", self.schedule, SCHEDULES)
        _check_choice("--opt", self.opt, OPTIMIZERS)
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


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
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
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _opt_func(name: str):
    from groundup.optim import SGD, Adam

    if name == "sgd":
        return functools.partial(SGD, momentum=0.9, wd=1e-4)
    return functools.partial(Adam, wd=1e-2)


def _versions() -> dict[str, str]:
    import matplotlib
    import PIL

    return {"groundup": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": np.__version__, "pillow": PIL.__version__, "matplotlib": matplotlib.__version__}


def _new_out_dir(out: str | None, suffix: str = "") -> Path:
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
    return _new_out_dir(out)


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
        cfg = TrainConfig.from_dict({**ckpt["config"], **{k: getattr(cfg, k) for k in _RESUME_MAY_CHANGE
                                                          if getattr(cfg, k) is not None}})
    data_path = resolve_data(cfg.data)
    dls = DataLoaders.from_folder(data_path, size=cfg.size, bs=cfg.bs, n_workers=cfg.workers, seed=cfg.seed)
    vocab = [label for label, _ in sorted(dls.vocab.items(), key=lambda kv: kv[1])]
    if ckpt is not None and ckpt.get("vocab") != vocab:
        raise ValueError(f"the labels in {data_path} ({len(vocab)}) differ from those the checkpoint {resume} "
                         f"was trained on ({len(ckpt.get('vocab') or [])}); resume with the same --data")
    run_dir = _run_dir(out, resume) if main_process else Path(out or ".")  # only rank 0 writes

    try:
        _seed_everything(cfg.seed)
        model = get_arch(cfg.arch, n_classes=len(vocab))
        cbs = [SetupLearnerCB(), DistributedCB()]
        if cfg.amp:
            from groundup.callbacks.mixed_precision import MixedPrecision

            cbs.append(MixedPrecision())
        learn = Learner(model, dls, cross_entropy, lr=1e-3 if cfg.lr == "auto" else cfg.lr,
                        opt_func=_opt_func(cfg.opt), cbs=cbs)

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
        "versions": _versions(),
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


# -- commands ---------------------------------------------------------------------------------------------------
def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    lr = args.lr if args.lr == "auto" else _number("--lr", args.lr)
    return TrainConfig(data=args.data, epochs=args.epochs, lr=lr, bs=args.bs, size=args.size, arch=args.arch,
                       schedule=args.schedule, opt=args.opt, workers=args.workers, seed=args.seed, amp=args.amp)


def _number(flag: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag} must be a number or 'auto', got {text!r}") from None


def _cmd_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    cfg = _config_from_args(args)
    if args.resume is not None:
        _check_resume_flags(args, read_checkpoint_config(args.resume))
        train(TrainConfig(data=args.data, workers=args.workers), out=args.out, resume=args.resume,
              quiet=args.quiet, argv=argv)
    else:
        train(cfg, out=args.out, quiet=args.quiet, argv=argv)
    return 0


def read_checkpoint_config(path: str) -> dict[str, Any]:
    """The run settings (`config`) stored in a checkpoint written by `groundup train`."""
    from groundup.checkpoint import CheckpointError, read_checkpoint

    config = read_checkpoint(path).get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has no run settings (it was not written by groundup "
                              f"train); continue it in Python with Learner.load")
    return config


def _check_resume_flags(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """A resumed run keeps its settings: a flag given with a different value is an error, not ignored."""
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in _RESUME_MAY_CHANGE:
            continue
        given = getattr(args, f.name)
        if f.name == "lr" and given != "auto":
            given = _number("--lr", given)
        if given != getattr(defaults, f.name) and given != saved.get(f.name):
            raise ValueError(f"--{f.name} {given} differs from the resumed run's {f.name}={saved.get(f.name)!r}; "
                             f"--resume continues the run with its own settings (leave --{f.name} out)")


def _cmd_lr_find(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from groundup.callbacks.setup import SetupLearnerCB
    from groundup.data.loader import DataLoaders
    from groundup.learner import Learner
    from groundup.losses import cross_entropy
    from groundup.nn.models import get_arch
    from groundup.report import write_text_atomic

    cfg = TrainConfig(data=args.data, bs=args.bs, size=args.size, arch=args.arch, opt=args.opt,
                      workers=args.workers, seed=args.seed, lr="auto")
    for flag, v in (("--start-lr", args.start_lr), ("--max-lr", args.max_lr)):
        if not 0 < v < math.inf:
            raise ValueError(f"{flag} must be a positive number, got {v!r}")
    if args.start_lr >= args.max_lr:
        raise ValueError(f"--start-lr ({args.start_lr:g}) must be below --max-lr ({args.max_lr:g})")
    data_path = resolve_data(cfg.data)
    dls = DataLoaders.from_folder(data_path, size=cfg.size, bs=cfg.bs, n_workers=cfg.workers, seed=cfg.seed)
    out = _new_out_dir(args.out, suffix="-lr-find")
    _seed_everything(cfg.seed)
    model = get_arch(cfg.arch, n_classes=len(dls.vocab))
    learn = Learner(model, dls, cross_entropy, lr=args.start_lr, opt_func=_opt_func(cfg.opt), cbs=[SetupLearnerCB()])
    found = learn.lr_find(start_lr=args.start_lr, max_lr=args.max_lr, path=out / "lr_find.png")
    dls.close()
    result = {"suggestion": found.lr, "method": found.method, "lrs": found.lrs, "losses": found.losses,
              "arch": cfg.arch, "opt": cfg.opt, "bs": cfg.bs, "size": cfg.size, "seed": cfg.seed,
              "data_path": str(data_path.resolve())}
    write_text_atomic(json.dumps(result, indent=2) + "\n", out / "lr_find.json")
    print(f"suggested lr: {found.lr:.3g} (method: {found.method})")
    print(f"wrote {out / 'lr_find.png'} and {out / 'lr_find.json'}")
    return 0


def _cmd_download(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from groundup.data.download import DATASETS, list_datasets, untar_data
    from groundup.progress import format_size

    if args.list:
        for a in list_datasets():
            size = format_size(a.size) if a.size else "?"
            print(f"{a.name:<16} {size:>10}  {a.url}")
        return 0
    if args.name is None:
        raise ValueError(f"download needs a NAME (one of: {', '.join(sorted(DATASETS))}) or --list")
    if args.name not in DATASETS:
        _check_choice("data set", args.name, sorted(DATASETS))
    path = untar_data(args.name, dest=args.dest)
    print(path)
    return 0


def _cmd_predict(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from groundup.predict import Predictor, find_images

    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    files = find_images(args.images)
    preds = predictor.predict(files, top_k=args.top)
    if args.json:
        print(json.dumps([p.to_dict() for p in preds], indent=2))
        return 0
    for p in preds:
        if args.top == 1:
            print(f"{p.path}\t{p.label}\t{p.prob:.4f}")
        else:
            print(f"{p.path}\t" + "\t".join(f"{lab} {prob:.4f}" for lab, prob in zip(p.labels, p.probs)))
    return 0


# -- the parser ---------------------------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it (for defaults like None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "default" in text else super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, `groundup: error: ...`, exit status 2 (as every other input error)."""

    def error(self, message: str):
        self.exit(2, f"groundup: error: {message} (see: {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {v}")
    return v


def _add_data_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    from groundup.nn.models import ARCHS

    p.add_argument("--data", default=None, metavar="FOLDER_OR_NAME",
                   help="a folder with train/<label>/ and val/<label>/ image subfolders, or a registry name "
                        "(see: groundup download --list), downloaded and cached on first use "
                        "(default: imagenette-mini, shipped in the package)")
    p.add_argument("--bs", type=_positive_int, default=d.bs, help="training batch size (validation: twice that)")
    p.add_argument("--size", type=_positive_int, default=d.size, help="images are squashed to SIZE x SIZE pixels")
    p.add_argument("--arch", default=d.arch, help=f"model architecture: {', '.join(sorted(ARCHS))}")
    p.add_argument("--opt", default=d.opt, help="optimizer: adam (AdamW, weight decay 0.01) or sgd "
                                                "(momentum 0.9, weight decay 1e-4)")
    p.add_argument("--workers", type=_non_negative_int, default=None,
                   help="data-loading processes, 0 to load in the main process "
                        "(default: one per CPU core, at most 8)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed for the weights and the shuffling")


def build_parser() -> argparse.ArgumentParser:
    """The `groundup` argument parser with its four subcommands."""
    d = TrainConfig()
    parser = _Parser(prog="groundup", formatter_class=_HelpFormatter,
                     description="groundup: train image classifiers with a deep-learning library you can read "
                                 "end to end. Errors exit with status 2.")
    parser.add_argument("--version", action="version", version=f"groundup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", formatter_class=_HelpFormatter, help="train a model and write a run folder",
                       description="Train an image classifier. A run writes metrics.csv, summary.json, model.pt "
                                   "(checkpoint after every epoch), best.pt, losses.png, schedule.png and "
                                   "report.html into its --out folder.")
    _add_data_options(t, d)
    t.add_argument("--epochs", type=_positive_int, default=d.epochs, help="number of epochs")
    t.add_argument("--lr", default=str(d.lr),
                   help="learning rate (the peak of the one-cycle schedule), or 'auto' to run the LR finder "
                        f"first and use its suggestion (default: {d.lr})")
    t.add_argument("--schedule", default=d.schedule, help=f"learning-rate schedule: {', '.join(SCHEDULES)}")
    t.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    t.add_argument("--out", default=None, help="the run folder; it must be new or empty "
                                               "(default: runs/<date-time>)")
    t.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT (its model.pt) with its own settings, from its "
                        "last finished epoch; only --data and --workers may change (default: a new run)")
    t.add_argument("--quiet", action="store_true", help="print nothing: no table, no progress bar")
    t.set_defaults(func=_cmd_train)

    f = sub.add_parser("lr-find", formatter_class=_HelpFormatter, help="run the learning-rate finder",
                       description="Run the learning-rate range test; write lr_find.png and lr_find.json "
                                   "(lrs, losses, suggestion, method) and print the suggestion.")
    _add_data_options(f, d)
    f.add_argument("--start-lr", type=float, default=1e-6, help="the first learning rate tried")
    f.add_argument("--max-lr", type=float, default=10.0, help="stop once the learning rate passes this")
    f.add_argument("--out", default=None, help="the output folder; it must be new or empty "
                                               "(default: runs/<date-time>-lr-find)")
    f.set_defaults(func=_cmd_lr_find)

    dl = sub.add_parser("download", formatter_class=_HelpFormatter, help="download a registry data set",
                        description="Download, verify and extract a data set from the registry (cached under "
                                    "$GROUNDUP_HOME, default ~/.groundup); print the folder.")
    dl.add_argument("name", nargs="?", default=None, metavar="NAME", help="the data set's name (see --list)")
    dl.add_argument("--dest", default=None, help="extract here (default: $GROUNDUP_HOME/data/NAME)")
    dl.add_argument("--list", action="store_true", help="list the registry's data sets and exit")
    dl.set_defaults(func=_cmd_download)

    pr = sub.add_parser("predict", formatter_class=_HelpFormatter, help="predict the labels of images",
                        description="Print the predicted label and its probability for each image "
                                    "(path, label, probability; tab-separated).")
    pr.add_argument("checkpoint", metavar="CHECKPOINT", help="a model.pt written by groundup train")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, or folders searched "
                                                                         "recursively for images")
    pr.add_argument("--top", type=int, default=1, metavar="K", help="show the K most probable labels")
    pr.add_argument("--json", action="store_true", help="print JSON: a list of {path, label, prob, top}")
    pr.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    pr.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `groundup` command with `argv` (default `sys.argv[1:]`); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args, argv)
    except KeyboardInterrupt:
        print("groundup: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:  # FileNotFoundError, CheckpointError, CorruptImageError, ...
        if os.environ.get("GROUNDUP_DEBUG"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"groundup: error: {message}", file=sys.stderr)
        return 2
