"""`groundup lr-find`: run the learning-rate range test and write its plot and numbers."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence

from groundup.commands.options import HelpFormatter, add_amp_option, add_data_options, add_device_option
from groundup.run.build import build_learner
from groundup.run.config import TrainConfig, auto_lr_rule
from groundup.run.folder import check_out_dir, new_out_dir
from groundup.utils.atomic import atomic_write
from groundup.utils.logs import console_logging

NAME = "lr-find"


def add_parser(sub) -> argparse.ArgumentParser:
    f = sub.add_parser(NAME, formatter_class=HelpFormatter, help="run the learning-rate finder",
                       description="Run the learning-rate range test; write lr_find.png and lr_find.json "
                                   "(lrs, losses, suggestion, method) and print the suggestion.")
    add_data_options(f)
    add_device_option(f)
    add_amp_option(f)
    f.add_argument("--start-lr", type=float, default=1e-6, help="the first learning rate tried")
    f.add_argument("--max-lr", type=float, default=10.0, help="stop once the learning rate passes this")
    f.add_argument("-v", "--verbose", action="count", default=0, help="also show debug messages")
    f.add_argument("--out", default=None, help="the output folder; it must be new or empty "
                                               "(default: runs/<date-time>-lr-find)")
    f.set_defaults(run=run)
    return f


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    with console_logging(args.verbose):
        return _run(args, argv)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    cfg = TrainConfig(data=args.data, bs=args.bs, size=args.size, arch=args.arch, opt=args.opt,
                      num_workers=args.num_workers, seed=args.seed, lr="auto",
                      device=args.device, amp=args.amp, wd=args.wd, momentum=args.momentum, nesterov=args.nesterov,
                      skip_corrupt=args.skip_corrupt,
                      exif_orientation=args.exif_orientation is not False,
                      labels=args.labels, valid_col=args.valid_col, valid_pct=args.valid_pct, task=args.task,
                      threshold=args.threshold)
    for flag, v in (("--start-lr", args.start_lr), ("--max-lr", args.max_lr)):
        if not 0 < v < math.inf:
            raise ValueError(f"{flag} must be a positive number, got {v!r}")
    if args.start_lr >= args.max_lr:
        raise ValueError(f"--start-lr ({args.start_lr:g}) must be below --max-lr ({args.max_lr:g})")
    check_out_dir(args.out)  # before any work
    learn = build_learner(cfg)
    try:
        out = new_out_dir(args.out, suffix="-lr-find")
        found = learn.lr_find(start_lr=args.start_lr, max_lr=args.max_lr, path=out / "lr_find.png",
                              **auto_lr_rule(cfg.opt))
    finally:
        learn.dls.close()
    result = {"suggestion": found.lr, "method": found.method, "cap": found.cap, "how": found.describe(),
              "lrs": found.lrs, "losses": found.losses, "arch": cfg.arch, "opt": cfg.opt, "bs": cfg.bs,
              "size": cfg.size, "seed": cfg.seed, "amp": cfg.amp, "data_path": str(learn.dls.path.resolve())}
    with atomic_write(out / "lr_find.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(result, indent=2) + "\n")
    print(f"suggested lr: {found.lr:.3g} (method: {result['how']})")
    print(f"wrote {out / 'lr_find.png'} and {out / 'lr_find.json'}")
    return 0
