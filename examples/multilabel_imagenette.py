"""A multi-label Imagenette: each image tagged with its class and a coarse tag, trained with the fast recipe.

Imagenette has one class per image. Giving each image a second, coarser tag (a tench and an English
springer are both an `animal`; a cassette player, a chain saw, a garbage truck and a gas pump are
`machine`s; ...) makes a multi-label set with 15 tags and two tags per image. The script writes
only a CSV (into GROUNDUP_HOME/tmp, or --out): absolute file names pointing at the images where
they are, the two tags, and 1 for the images of val/ (the published split). Nothing is copied.
Then it trains `groundup.run.train.train` with the fast recipe's settings (resnet_fast at 64 px,
AdamW one-cycle, crops and flips, flip TTA; the loss is binary cross-entropy, chosen from the data)
and prints the micro- and macro-F1 and the per-tag table of the validation set.

NOTE (measured once, on 2 CPU cores shared with six other jobs, load average about 17): an epoch took
1761 s (the first, decoding 13,394 JPEGs into the cache) and 1542 s, so the run was stopped after 2 of
5 epochs; `groundup evaluate` of its model.pt on the 3,925 val/ images (no TTA, one-cycle still near its
peak lr): accuracy_multi 0.893, micro-F1 0.495, macro-F1 0.383. Not a measure of what 5 epochs reach.

Run:  python examples/multilabel_imagenette.py [--data /work/shared/data/imagenette2-224] [--epochs 5]
      (the same from the command line: groundup train --recipe fast --data DATA --labels CSV --epochs 5)
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from groundup.data.files import get_image_files, parent_label
from groundup.run.interpret import format_per_class
from groundup.run.recipes import get_recipe
from groundup.run.train import train
from groundup.utils.logs import setup_logging
from groundup.utils.paths import groundup_home

# The coarse tag of each Imagenette class (ImageNet synset: class name -> tag).
COARSE_TAGS = {
    "n01440764": "animal",      # tench (a fish)
    "n02102040": "animal",      # English springer (a dog)
    "n02979186": "machine",     # cassette player
    "n03000684": "machine",     # chain saw
    "n03028079": "building",    # church
    "n03394916": "instrument",  # French horn
    "n03417042": "machine",     # garbage truck
    "n03425413": "machine",     # gas pump
    "n03445777": "sport",       # golf ball
    "n03888257": "sport",       # parachute
}


def write_tag_csv(data: Path, out: Path, per_class: int | None = None) -> Path:
    """Write `out/labels.csv`: `fname` (absolute), `tags` (class and coarse tag), `is_valid` (1 under val/)."""
    rows, seen = [], {}
    for f in get_image_files(data):
        split, label = f.parent.parent.name, parent_label(f)
        if split not in ("train", "val") or label not in COARSE_TAGS:
            continue
        seen[split, label] = seen.get((split, label), 0) + 1
        if per_class is not None and seen[split, label] > per_class:
            continue
        rows.append((str(f.resolve()), f"{label} {COARSE_TAGS[label]}", int(split == "val")))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "labels.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("fname", "tags", "is_valid"))
        writer.writerows(rows)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/work/shared/data/imagenette2-224", help="an Imagenette folder (train/, val/)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--per-class", type=int, default=None, help="at most this many images per class and split "
                                                                "(a quick try; default: all)")
    p.add_argument("--out", default=None, help="the folder for the CSV and the run (default: a new one under "
                                               "GROUNDUP_HOME/tmp)")
    args = p.parse_args()
    setup_logging()
    data = Path(args.data)
    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="multilabel-", dir=_tmp()))
    start = time.perf_counter()
    csv_path = write_tag_csv(data, base, args.per_class)
    # valid_col: the published val/ split, not a random one. The CSV's file names are absolute, so they are
    # taken as they are (relative ones would be read under data).
    cfg = get_recipe("fast").config(data=str(data), labels=str(csv_path), valid_col="is_valid", epochs=args.epochs,
                                    seed=0)
    summary = train(cfg, out=str(base / "run"), quiet=True)
    wall = time.perf_counter() - start
    metrics = summary["metrics"]
    print(f"\n{summary['n_train']} train, {summary['n_valid']} valid images, {len(summary['vocab'])} tags, "
          f"{args.epochs} epochs of {cfg.arch} at {cfg.size} px in {wall:.0f} s ({os.cpu_count()} CPUs)")
    print(f"valid micro-F1 {metrics['valid micro-F1']:.4f}, macro-F1 {metrics['valid macro-F1']:.4f}, "
          f"accuracy_multi {summary['final']['valid_acc']:.4f} (threshold {summary['threshold']:g}, flip TTA)")
    print(format_per_class(summary["per_class"]))
    print(f"run folder: {base / 'run'} (report.html, per_tag.png); CSV: {csv_path}")


def _tmp() -> Path:
    path = groundup_home() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
