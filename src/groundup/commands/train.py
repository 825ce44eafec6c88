"""`groundup train`: train a model and write a run folder (see `groundup.run`)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from groundup.callbacks.tensorboard import require_tensorboard
from groundup.commands.options import (
    HelpFormatter,
    add_amp_option,
    add_data_options,
    add_device_option,
    number,
    positive_int,
    positive_number,
)
from groundup.data.augment import CROPS
from groundup.run.config import (
    ANNEALS,
    MONITORS,
    RESUME_MAY_CHANGE,
    SCHEDULES,
    TrainConfig,
    read_toml_settings,
)
from groundup.run.recipes import format_recipes, get_recipe
from groundup.run.resume import open_resume
from groundup.run.train import train
from groundup.utils.logs import console_logging

NAME = "train"


def add_parser(sub) -> argparse.ArgumentParser:
    d = TrainConfig()
    t = sub.add_parser(NAME, formatter_class=HelpFormatter, help="train a model and write a run folder",
                       description="Train an image classifier. A run writes metrics.csv, steps.csv, config.toml, "
                                   "summary.json, model.pt (checkpoint after every epoch), best.pt, losses.png, "
                                   "schedule.png, confusion_matrix.png, top_losses.png, per_class.csv and "
                                   "report.html into its --out folder.")
    add_data_options(t)
    t.add_argument("--valid-bs", type=positive_int, default=None, metavar="N",
                   help="validation batch size (default: twice --bs)")
    t.add_argument("--valid-every", type=positive_int, default=d.valid_every, metavar="N",
                   help="validate only every N-th epoch and the last one: more time for training "
                        "(default: %(default)s, every epoch)")
    t.add_argument("-e", "--epochs", type=positive_int, default=None,
                   help=f"number of epochs; with --resume, a new number for a --schedule constant run "
                        f"(default: {d.epochs})")
    t.add_argument("--lr", default=str(d.lr),
                   help="learning rate (the peak of the one-cycle schedule), or 'auto' to run the LR finder "
                        "first and use its suggestion (sgd: its slide rule; adam: 0.01 unless the loss rises "
                        f"before 0.005) (default: {d.lr})")
    t.add_argument("--schedule", default=d.schedule, help=f"learning-rate schedule: {', '.join(SCHEDULES)}")
    t.add_argument("--ema", type=float, default=d.ema, metavar="DECAY",
                   help="validate, save and finish with a moving average of the weights, each step keeping "
                        "DECAY of it (e.g. 0.99: about the last 100 steps); 0: none (default: %(default)s)")
    t.add_argument("--clip", type=positive_number, default=None, metavar="NORM",
                   help="clip the gradient norm to NORM before each step (default: no clipping)")
    t.add_argument("--accumulate", type=positive_int, default=d.accumulate, metavar="K",
                   help="step once every K batches, adding up their gradients (the loss divided by K): "
                        "like a batch K times larger, in the memory of one")
    add_amp_option(t)
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=d.compile,
                   help="train a torch.compile'd model: costs 10-70 s of compiling once, pays off over a few "
                        "hundred steps or more (see benchmarks/bench_compile.py)")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                   help="random crops and flips of the training images (see --crop)")
    t.add_argument("--crop", choices=CROPS, default=d.crop,
                   help="with --augment: 'resize', random resized crops (images cached at 1.25x --size), or "
                        "'pad', random shifts by up to --size/16 pixels, padded by reflection (default: %(default)s)")
    t.add_argument("--crop-scale", type=positive_number, default=d.crop_scale, metavar="FRACTION",
                   help="with --augment --crop resize, the smallest fraction of an image's area a crop covers")
    t.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                   help="with --augment, train on N x N crops; validation still sees --size (default: --size)")
    t.add_argument("--start-size", type=positive_int, default=None, metavar="N",
                   help="progressive resizing: train the first epochs on N x N images, growing in steps of 16 "
                        "pixels to full size by --grow-until of the epochs (default: full size throughout)")
    t.add_argument("--grow-until", type=positive_number, default=d.grow_until, metavar="FRACTION",
                   help="with --start-size, the fraction of the epochs after which training is at full size")
    t.add_argument("--label-smoothing", type=float, default=d.label_smoothing, metavar="EPS",
                   help="label smoothing of the cross-entropy loss")
    t.add_argument("--tta", action=argparse.BooleanOptionalAction, default=d.tta,
                   help="also evaluate the final model with flip test-time augmentation (summary: tta_acc)")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=d.channels_last,
                   help="channels-last (NHWC) conv weights, the layout of groundup's batches: faster on CPU")
    t.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=d.deterministic,
                   help="deterministic algorithms (cuDNN, cuBLAS): a GPU run then repeats and resumes bit for "
                        "bit, somewhat slower; CPU runs do already")
    t.add_argument("--wd-norms", action=argparse.BooleanOptionalAction, default=d.wd_norms,
                   help="weight decay on norm layers and biases too (--no-wd-norms leaves them out)")
    t.add_argument("--warmup", type=float, default=d.warmup, metavar="FRACTION",
                   help="fraction of the one-cycle schedule spent warming up")
    t.add_argument("--anneal", default=d.anneal, choices=ANNEALS,
                   help="how one-cycle comes down after the warm-up")
    t.add_argument("--init", default=None, metavar="RUN_OR_CHECKPOINT",
                   help="start from these trained weights (a run folder, a groundup checkpoint, or a state dict "
                        "such as torchvision's resnet18-*.pth for --arch resnet18) and fine-tune: a new head "
                        "when the classes differ, --freeze-epochs with the body frozen, then --epochs with "
                        "learning rates from lr/200 (the body's first layers) to lr/2 (the head) "
                        "(default: train from scratch)")
    t.add_argument("--freeze-epochs", type=int, default=d.freeze_epochs, metavar="N",
                   help="with --init, epochs that train only the head (and norm layers) first")
    t.add_argument("--recipe", default=None, metavar="NAME",
                   help="start from a named preset of these settings (see --list-recipes); options given "
                        "as well override it (default: none)")
    t.add_argument("--list-recipes", action="store_true", help="print the recipes and their settings, and exit")
    add_device_option(t)
    t.add_argument("--monitor", default=d.monitor, choices=MONITORS,
                   help="the metric that picks best.pt and that --patience watches (a loss: lower is better; "
                        "an accuracy: higher)")
    t.add_argument("--patience", type=positive_int, default=None, metavar="N",
                   help="stop early when --monitor has not improved for N epochs; best.pt keeps the best "
                        "epoch (default: run every epoch)")
    t.add_argument("--out", default=None, help="the run folder; it must be new or empty "
                                               "(default: runs/<date-time>)")
    t.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT (its model.pt) with its own settings, from its "
                        "last finished epoch; only --data, --num-workers, --device, --tensorboard and --skip-corrupt may change "
                        "(default: a new run)")
    t.add_argument("--tensorboard", action="store_true",
                   help="also log to TensorBoard, into the run folder's tensorboard/ (needs: pip install "
                        "'groundup[tensorboard]')")
    t.add_argument("--quiet", action="store_true",
                   help="no table, no progress bar, no messages but warnings (errors still print)")
    t.add_argument("-v", "--verbose", action="count", default=0,
                   help="also show debug messages (e.g. each checkpoint saved); the log is Python logging's "
                        "'groundup' logger")
    t.add_argument("--config", default=None, metavar="FILE",
                   help="read settings from a TOML file, one 'key = value' per option (as --print-config "
                        "writes them; also out, resume, quiet, verbose); flags on the command line win "
                        "(default: none)")
    t.add_argument("--print-config", action="store_true",
                   help="print the settings (file and flags together) as TOML, loadable by --config, and exit")
    t.set_defaults(run=run, parser=t)
    return t


# Settings a --config file may hold besides TrainConfig's fields: how this command runs, not the run.
FILE_EXTRAS = {"out": str, "resume": str, "quiet": bool, "verbose": int}


def with_presets(args: argparse.Namespace, argv: Sequence[str]) -> argparse.Namespace:
    """The arguments read again with presets as defaults, so that flags given win: first the recipe's
    settings (`--recipe`, or the file's `recipe`), then those of `--config FILE`."""
    settings = read_toml_settings(args.config, extra=FILE_EXTRAS) if args.config is not None else {}
    parser = args.parser
    recipe = args.recipe if args.recipe is not None else settings.get("recipe")
    if recipe is not None:
        parser.set_defaults(**get_recipe(recipe).settings, recipe=recipe)
    parser.set_defaults(**settings)
    argv = list(argv)
    return parser.parse_args(argv[argv.index(NAME) + 1:] if NAME in argv else argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` the flags describe (validated: a bad value raises ValueError naming its flag)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}  # one flag per setting
    values = {k: v for k, v in values.items() if v is not None}  # not given: TrainConfig's default
    if values["lr"] != "auto":
        values["lr"] = number("--lr", values["lr"])
    return TrainConfig(**values)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.list_recipes:
        print(format_recipes())
        return 0
    if args.config is not None or args.recipe is not None:
        args = with_presets(args, argv)
    with console_logging(args.verbose, args.quiet):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    cfg = config_from_args(args)
    resume = None
    if args.resume is not None:  # the checkpoint is read here, once, and its resume rules checked
        given = {name: getattr(cfg, name) for name in given_options(argv) if name in TRAIN_FIELDS}
        resume = open_resume(args.resume, {k: getattr(args, k) for k in RESUME_MAY_CHANGE}, epochs=args.epochs,
                             given=given)
        cfg = resume.cfg
    if args.print_config:
        print(cfg.to_toml(), end="")
        return 0
    if args.tensorboard:
        try:  # before any work: a missing optional package is a one-line error
            require_tensorboard()
        except ImportError as e:
            raise ValueError(f"--tensorboard: {e}") from None
    train(cfg, out=args.out, resume=resume, quiet=args.quiet, argv=argv)
    return 0


TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


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
    return set(vars(parser.parse_known_args(rest)[0])) - {"run", "parser"}
