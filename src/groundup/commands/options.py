"""What the subcommands' parsers share: the help format, integer types, and the data options."""

from __future__ import annotations

import argparse
import math

from groundup.data.folder import TASKS
from groundup.run.config import DEFAULT_MOMENTUM, DEFAULT_WD, OPTIMIZERS, TrainConfig
from groundup.nn.models import ARCHS
from groundup.utils.devices import DEVICE_ENV

__all__ = ["HelpFormatter", "add_data_options", "add_device_option", "non_negative_int", "number", "positive_int",
           "positive_number"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it (for defaults like None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "default" in text else super()._get_help_string(action)


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


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer >= 0")


def positive_number(text: str) -> float:
    """An argparse `type` that accepts finite numbers > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < v < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def number(flag: str, text: str) -> float:
    """`text` as a float, or ValueError naming `flag`."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag} must be a number or 'auto', got {text!r}") from None


def add_data_options(p: argparse.ArgumentParser) -> None:
    """--data, --bs, --size, --arch, --opt, --wd, --momentum, --nesterov, --num-workers, --seed, --skip-corrupt,
    --labels, --valid-pct, --task, --threshold: `train`'s and `lr-find`'s."""
    d = TrainConfig()
    p.add_argument("--data", default=None, metavar="FOLDER_OR_NAME",
                   help="a folder with train/<label>/ and val/<label>/ image subfolders (without val/, or with "
                        "only <label>/ folders, a random --valid-pct validates), or a data set's name (see: "
                        "groundup download --list): imagenette-mini, or a registry name, downloaded and cached "
                        "on first use (default: imagenette-mini, shipped in the package)")
    p.add_argument("-b", "--bs", type=positive_int, default=d.bs,
                   help="training batch size (validation: twice that; train's --valid-bs sets it)")
    p.add_argument("--size", type=positive_int, default=d.size, help="images are squashed to SIZE x SIZE pixels")
    p.add_argument("--arch", default=d.arch, help=f"model architecture: {', '.join(sorted(ARCHS))}")
    p.add_argument("--opt", default=d.opt, help=f"optimizer: {' or '.join(OPTIMIZERS)} (adam: AdamW, weight "
                                                "decay 0.01; sgd: momentum 0.9, weight decay 1e-4)")
    p.add_argument("--wd", type=float, default=None,
                   help="weight decay (default: " + ", ".join(f"{DEFAULT_WD[o]:g} for {o}" for o in OPTIMIZERS)
                        + "; adam's is decoupled, as AdamW)")
    p.add_argument("--momentum", type=float, default=None,
                   help=f"SGD's momentum or Adam's beta1, held fixed when given (default: {DEFAULT_MOMENTUM}, "
                        "cycled 0.95 -> 0.85 -> 0.95 under the one-cycle schedule)")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=d.nesterov,
                   help="with --opt sgd, Nesterov momentum")
    p.add_argument("-j", "--num-workers", type=non_negative_int, default=None,
                   help="data-loading processes, 0 to load in the main process "
                        "(default: one per CPU core, at most 8)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed for the weights and the shuffling")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="skip images that cannot be decoded (with a warning) instead of stopping; with --labels, "
                        "also CSV rows that name no image or no label (counted and logged)")
    p.add_argument("--no-exif-orientation", dest="exif_orientation", action="store_false", default=None,
                   help="use photos as stored, not turned as their EXIF orientation tag says (the default "
                        "turns them; prediction then does as training did)")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="take the images and their labels from a CSV under --data (a header line, then file "
                        "name, label per row; several space-separated tags in a label make a multi-label "
                        "set) instead of class folders (default: class folders)")
    p.add_argument("--valid-col", default=None, metavar="COLUMN",
                   help="with --labels, the CSV column (name or number) that is 1/true for validation images "
                        "(default: none; a random --valid-pct validates)")
    p.add_argument("--valid-pct", type=float, default=None, metavar="FRACTION",
                   help="hold out this random share of the images for validation where the data has no "
                        "validation part (default: 0.2 without a val/ folder)")
    p.add_argument("--task", default=d.task, choices=TASKS,
                   help="single-label or multi-label classification; auto: multi-label when any image has "
                        "several labels")
    p.add_argument("--threshold", type=float, default=d.threshold, metavar="P",
                   help="multi-label: a tag is predicted where its probability is above P")


def add_amp_option(p: argparse.ArgumentParser) -> None:
    """--amp, as train and lr-find take it (the LR finder then measures what training will do)."""
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=TrainConfig().amp,
                   help="mixed precision (bfloat16 on CPU, float16 on CUDA)")


def add_device_option(p: argparse.ArgumentParser, what: str = "train") -> None:
    """--device, as every subcommand takes it: the same names and meaning everywhere.

    The value is checked (spelling, and whether this machine has it) by the one function
    `groundup.utils.devices.resolve_device`, before any work starts.
    """
    p.add_argument("--device", default=TrainConfig().device, metavar="{auto,cpu,cuda,cuda:N,mps}",
                   help=f"where to {what}: auto is ${DEVICE_ENV} when set, else CUDA when available (under "
                        f"torchrun: each process's own GPU, cuda:LOCAL_RANK), else the CPU (default: auto)")
