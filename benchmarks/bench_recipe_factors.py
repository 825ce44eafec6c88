"""Benchmark: which of the fast recipe's ingredients cost accuracy per epoch (issue 25, step 1).

The reference script `../shared/reference/recipe_probe.py` learned more per epoch than groundup 0.2's
`--recipe fast`. This runs the recipe of the time (`RECIPE_THEN`) at 15 epochs, seed 0, on imagenette2-224 at 64 px with every
factor set as the script sets it ("probe": the baseline), then with one factor at a time put back
as groundup 0.2 had it, each in a fresh process and `GROUNDUP_HOME`, and prints one row per run:
final valid accuracy, with flip TTA, and wall seconds from the process start.

Factors (probe's setting -> groundup 0.2's):
    crop        --crop pad (shifts of up to 4 px, images stored at 64 px)  ->  --crop resize
                --crop-scale 0.8 (random resized crops of 80-100 % of an 80-px stored image)
    arch        resnet_fast (two-layer stem 3->16->32, average-pool shortcuts, torch's init)
                ->  the 0.2 shape (one 3->32 stride-2 conv stem, strided 1x1 shortcuts, groundup's init)
    init        resnet_fast with groundup's kaiming/xavier init instead of torch's
    adam        Adam's beta2 0.999 and eps 1e-8 (torch's)  ->  0.99 and 1e-5 (groundup's, fastai's)
    div         one-cycle starts at lr / 25 (torch's OneCycleLR)  ->  lr / 10 (groundup's OneCycle)
The 0.2 recipe itself is the row "all 0.2" (every factor put back).

Run:  python benchmarks/bench_recipe_factors.py [--runs probe crop arch init adam div "all 0.2"] [--out DIR]
      [--data FOLDER] [--epochs 15]
Each run takes 7-9 minutes on 2 cores; run it alone on the machine (the seconds are wall time).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import IMAGENETTE, require_data

# The fast recipe as it was when this table was measured (commit bd5bcb9: AdamW, label smoothing
# 0.1, no progressive resizing, every epoch validated), spelled out: `--recipe fast` has moved on since.
RECIPE_THEN = ["--size", "64", "--bs", "64", "--lr", "3e-3", "--opt", "adam", "--wd", "0.05", "--no-wd-norms",
               "--schedule", "one-cycle", "--warmup", "0.25", "--anneal", "cos", "--augment", "--label-smoothing",
               "0.1", "--tta", "--no-compile", "--channels-last"]
PROBE = {"crop": "pad", "arch": "resnet_fast", "adam": "torch", "div": 25.0}
RUNS = {  # name -> the factors that differ from PROBE
    "probe": {},
    "crop": {"crop": "resize"},
    "arch": {"arch": "resnet_fast_0_2"},
    "init": {"arch": "resnet_fast_groundup_init"},
    "adam": {"adam": "groundup"},
    "div": {"div": 10.0},
    "all 0.2": {"crop": "resize", "arch": "resnet_fast_0_2", "adam": "groundup", "div": 10.0},
}


def one_run(factors: dict, out: Path, data: Path, epochs: int) -> None:
    """In this process: set the factors, then run `groundup train` with `RECIPE_THEN` for `epochs` epochs, seed 0."""
    from groundup.callbacks.schedules import OneCycle
    from groundup.cli import main
    from groundup.nn.models import _resnet_split, register_arch, resnet
    from groundup.optim import Adam
    from groundup.run import config, fit

    @register_arch(splitter=_resnet_split)
    def resnet_fast_0_2(n_in: int = 3, n_classes: int = 10):
        return resnet(n_in, n_classes, width=32, depth=4, stem_stride=2, first_stride=1)

    @register_arch(splitter=_resnet_split)
    def resnet_fast_groundup_init(n_in: int = 3, n_classes: int = 10):
        return resnet(n_in, n_classes, width=32, depth=4, stem_stride=2, first_stride=1, stem=(16, 32),
                      shortcut="avg", init="groundup")

    if factors["adam"] == "torch":  # the run's optimizer factory builds Adam from config's name for it
        class TorchConstantsAdam(Adam):
            def __init__(self, params, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.0, wd=None):
                super().__init__(params, lr=lr, betas=(betas[0], 0.999), eps=1e-8, weight_decay=weight_decay, wd=wd)
        config.Adam = TorchConstantsAdam
    fit.OneCycle = functools.partial(OneCycle, div=factors["div"])
    crop = ["--crop", "pad"] if factors["crop"] == "pad" else ["--crop", "resize", "--crop-scale", "0.8"]
    sys.exit(main(["train", *RECIPE_THEN, "--epochs", str(epochs), "--seed", "0", "--data", str(data),
                   "--arch", factors["arch"], *crop, "--out", str(out), "--quiet"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--data", type=Path, default=IMAGENETTE)
    p.add_argument("--out", type=Path, default=Path("runs/bench_recipe_factors"))
    p.add_argument("--epochs", type=int, default=15, help="epochs per run (the table: 15)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, in this process
    args = p.parse_args()
    data = require_data(args.data)
    if args.one is not None:
        one_run({**PROBE, **RUNS[args.one]}, args.out / args.one.replace(" ", "_"), data, args.epochs)
    print("run\tfactors\tvalid_acc\ttta_acc\tseconds", flush=True)
    for name in args.runs:
        run_dir = args.out / name.replace(" ", "_")
        if not (run_dir / "summary.json").is_file():
            with tempfile.TemporaryDirectory(prefix="groundup-home-") as home:
                env = {**os.environ, "GROUNDUP_HOME": home}
                start = time.perf_counter()
                subprocess.run([sys.executable, __file__, "--one", name, "--data", str(data), "--out", str(args.out),
                                "--epochs", str(args.epochs)], env=env, check=True)
                (run_dir / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        summary = json.loads((run_dir / "summary.json").read_text())
        wall = (run_dir / "wall_seconds.txt").read_text().strip() if (run_dir / "wall_seconds.txt").is_file() else "?"
        print(f"{name}\t{RUNS[name] or 'as the script'}\t{summary['final']['valid_acc']:.4f}\t"
              f"{summary['tta_acc']:.4f}\t{wall}", flush=True)


if __name__ == "__main__":
    main()
