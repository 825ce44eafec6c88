"""What the subcommands' parsers share: the help format, integer types, and the data options."""

from __future__ import annotations

import argparse
import math

from groundup.run.config import DEFAULT_MOMENTUM, DEFAULT_WD, OPTIMIZERS, TrainConfig
from groundup.nn.models import ARCHS

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
    """--data, --bs, --size, --arch, --opt, --wd, --momentum, --workers, --seed, --skip-corrupt: `train`'s and `lr-find`'s."""
    d = TrainConfig()
    p.add_argument("--data", default=None, metavar="FOLDER_OR_NAME",
                   help="a folder with train/<label>/ and val/<label>/ image subfolders, or a data set's name "
                        "(see: groundup download --list): imagenette-mini, or a registry name, downloaded and "
                        "cached on first use (default: imagenette-mini, shipped in the package)")
    p.add_argument("-b", "--bs", type=positive_int, default=d.bs,
                   help="training batch size (validation: twice that)")
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
    p.add_argument("-j", "--workers", dest="num_workers", type=non_negative_int, default=None,
                   help="data-loading processes, 0 to load in the main process "
                        "(default: one per CPU core, at most 8)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed for the weights and the shuffling")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="skip images that cannot be decoded (with a warning) instead of stopping")


def add_device_option(p: argparse.ArgumentParser) -> None:
    """--device, as `train` and `lr-find` take it (checked when the learner is built: `groundup.utils.devices`)."""
    p.add_argument("--device", default=TrainConfig().device, metavar="{auto,cpu,cuda,cuda:N}",
                   help="where to train: auto is CUDA when available (under torchrun: each process's GPU), "
                        "else the CPU")
