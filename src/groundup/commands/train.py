"""`groundup train`: train a model and write a run folder (see `groundup.run`)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from groundup.commands.options import HelpFormatter, add_data_options, number, positive_int
from groundup.config import RESUME_MAY_CHANGE, SCHEDULES, TrainConfig
from groundup.run import read_checkpoint_config, train

NAME = "train"


def add_parser(sub) -> argparse.ArgumentParser:
    d = TrainConfig()
    t = sub.add_parser(NAME, formatter_class=HelpFormatter, help="train a model and write a run folder",
                       description="Train an image classifier. A run writes metrics.csv, summary.json, model.pt "
                                   "(checkpoint after every epoch), best.pt, losses.png, schedule.png and "
                                   "report.html into its --out folder.")
    add_data_options(t)
    t.add_argument("--epochs", type=positive_int, default=d.epochs, help="number of epochs")
    t.add_argument("--lr", default=str(d.lr),
                   help="learning rate (the peak of the one-cycle schedule), or 'auto' to run the LR finder "
                        f"first and use its suggestion (default: {d.lr})")
    t.add_argument("--schedule", default=d.schedule, help=f"learning-rate schedule: {', '.join(SCHEDULES)}")
    t.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    t.add_argument("--out", default=None, help="the run folder; it must be new or empty "
                                               "(default: runs/<date-time>)")
    t.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT (its model.pt) with its own settings, from its "
                        "last finished epoch; only --data, --workers and --skip-corrupt may change "
                        "(default: a new run)")
    t.add_argument("--quiet", action="store_true", help="print nothing: no table, no progress bar")
    t.set_defaults(run=run)
    return t


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` the flags describe (validated: a bad value raises ValueError naming its flag)."""
    lr = args.lr if args.lr == "auto" else number("--lr", args.lr)
    return TrainConfig(data=args.data, epochs=args.epochs, lr=lr, bs=args.bs, size=args.size, arch=args.arch,
                       schedule=args.schedule, opt=args.opt, num_workers=args.num_workers, seed=args.seed,
                       amp=args.amp, skip_corrupt=args.skip_corrupt)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    cfg = config_from_args(args)
    if args.resume is not None:
        check_resume_flags(args, read_checkpoint_config(args.resume), given=given_options(argv))
        may_change = TrainConfig(data=args.data, num_workers=args.num_workers, skip_corrupt=args.skip_corrupt)
        train(may_change, out=args.out, resume=args.resume, quiet=args.quiet, argv=argv)
    else:
        train(cfg, out=args.out, quiet=args.quiet, argv=argv)
    return 0


def given_options(argv: Sequence[str]) -> set[str]:
    """The names (argparse dests) of the `train` options actually on the command line `argv`, whatever their values.

    `argv` is parsed again by a copy of the parser whose defaults are all `argparse.SUPPRESS`, so
    an option that was not given leaves no attribute: `--arch simple_cnn` counts as given even
    though it is the default (and abbreviations such as `--ar` count as they parse).
    """
    parser = add_parser(argparse.ArgumentParser(add_help=False).add_subparsers())
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    argv = list(argv)
    rest = argv[argv.index(NAME) + 1:] if NAME in argv else argv
    return set(vars(parser.parse_known_args(rest)[0])) - {"run"}


def check_resume_flags(args: argparse.Namespace, saved: dict[str, Any], given: set[str] | None = None) -> None:
    """A resumed run keeps its settings: a flag given with a different value is an error, not ignored.

    Args:
        args: the parsed flags.
        saved: the run settings stored in the checkpoint.
        given: the flags actually on the command line (`given_options`); a given flag that
            differs from the checkpoint is refused even when it equals the default. None: only
            flags whose value differs from the default count as given.
    """
    defaults = TrainConfig()
    saved = TrainConfig.from_dict(saved).to_dict()
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUME_MAY_CHANGE:
            continue
        value = getattr(args, f.name)
        if f.name == "lr" and value != "auto":
            value = number("--lr", value)
        was_given = f.name in given if given is not None else value != getattr(defaults, f.name)
        if was_given and value != saved.get(f.name):
            raise ValueError(f"--{f.name} {value} differs from the resumed run's {f.name}={saved.get(f.name)!r}; "
                             f"--resume continues the run with its own settings (leave --{f.name} out)")
