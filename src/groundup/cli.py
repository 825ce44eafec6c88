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
status 2. Set `GROUNDUP_DEBUG=1` to see the traceback instead. What a training run does (build the
learner, fit, write the run folder) lives in `groundup.run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from groundup import __version__
from groundup.run import (
    OPTIMIZERS,
    RESUME_MAY_CHANGE,
    SCHEDULES,
    TrainConfig,
    check_choice,
    check_image_folder,
    new_out_dir,
    opt_func_for,
    read_checkpoint_config,
    resolve_data,
    seed_everything,
    shipped_dataset,
    train,
)

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


def _check_resume_flags(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """A resumed run keeps its settings: a flag given with a different value is an error, not ignored."""
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUME_MAY_CHANGE:
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
    out = new_out_dir(args.out, suffix="-lr-find")
    seed_everything(cfg.seed)
    model = get_arch(cfg.arch, n_classes=len(dls.vocab))
    learn = Learner(model, dls, cross_entropy, lr=args.start_lr, opt_func=opt_func_for(cfg.opt), cbs=[SetupLearnerCB()])
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
        check_choice("data set", args.name, sorted(DATASETS))
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


def _int_at_least(low: int, wording: str):
    """An argparse `type` that accepts integers >= `low` and says `wording` otherwise."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wording}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be {wording}, got {v}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


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
    except BrokenPipeError:  # `groundup predict ... | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except (ValueError, TypeError, OSError) as e:  # FileNotFoundError, CheckpointError, CorruptImageError, ...
        if os.environ.get("GROUNDUP_DEBUG"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"groundup: error: {message}", file=sys.stderr)
        return 2
