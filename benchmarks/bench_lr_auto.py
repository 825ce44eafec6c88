"""Benchmark: does `--lr auto` do at least as well as the default lr (issue 20, point 2)?

For each data set, architecture and optimizer: one `groundup lr-find` run (its curve in
lr_find.json), then `groundup train` runs of the same epochs and seed at the default lr, with
`--lr auto` (the rule groundup uses for that optimizer: `slide` with SGD; with AdamW the default,
lowered to `rise` when the curve rises before half of it: `groundup.run.config.auto_lr_rule`), and
at each rule's own suggestion computed from the same curve (`suggest_lr(method=...)`, no cap).
Every run is a command a user can type; the table has one row per run: data, arch, optimizer,
epochs, rule, lr, final valid accuracy.

Data sets: `mini` (the shipped imagenette-mini, 10 epochs, every rule), `val-split` (imagenette2-224's
val/ folder alone with a random 20 % held out: a split of Imagenette that no run trains on
otherwise, 5 epochs) and `imagenette` (imagenette2-224 at 64 px, 3 epochs). The two Imagenette sets
try the default and `--lr auto` only. Accuracy against lr over many seeds, and the rules judged
against that, is `lr_grid.py`'s job.

Run:  python benchmarks/bench_lr_auto.py [--sets mini val-split imagenette] [--opts adam sgd] [--out DIR]
A finished run in DIR is reused (delete DIR to measure again). Accuracy, not time: it may share the
machine, but one run of the whole grid takes about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from common import IMAGENETTE

from groundup.callbacks.lr_finder import METHODS, suggest_lr
from groundup.run.config import DEFAULT_LR


def sets(data: Path) -> dict[str, tuple[list[str], int, tuple[str, ...]]]:
    """name -> (the data arguments, epochs, the rules tried besides the default)."""
    return {
        "mini": (["--data", "imagenette-mini"], 10, METHODS),
        "val-split": (["--data", str(data / "val"), "--valid-pct", "0.2"], 5, ()),
        "imagenette": (["--data", str(data)], 3, ()),
    }


def groundup(*args: str) -> None:
    done = subprocess.run(["groundup", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"groundup {' '.join(args)} failed: {done.stderr.strip()[-500:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["mini", "val-split", "imagenette"])
    p.add_argument("--opts", nargs="+", default=["adam", "sgd"])
    p.add_argument("--data", type=Path, default=IMAGENETTE)
    p.add_argument("--out", type=Path, default=Path("runs/bench_lr_auto"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    grid = sets(args.data)
    print("data\tarch\topt\tepochs\trule\tlr\tvalid_acc", flush=True)
    for name in args.sets:
        data, epochs, rules = grid[name]
        for arch in ("simple_cnn", "resnet"):
            for opt in args.opts:
                tag = f"{name}-{arch}-{opt}"
                common = [*data, "--arch", arch, "--opt", opt, "--seed", str(args.seed)]
                find = args.out / f"{tag}-find"
                if not (find / "lr_find.json").is_file():
                    groundup("lr-find", *common, "--out", str(find))
                curve = json.loads((find / "lr_find.json").read_text())
                lrs: dict[str, str] = {"default": f"{DEFAULT_LR:g}", "auto": "auto"}  # auto: what a user gets
                for rule in rules:
                    try:
                        lrs[rule] = f"{suggest_lr(curve['lrs'], curve['losses'], method=rule).lr:.6g}"
                    except ValueError as e:
                        print(f"{tag}: {rule} does not apply ({e})", flush=True)
                for rule, lr in lrs.items():
                    run = args.out / f"{tag}-{rule.replace('/', '')}"  # min/10 -> min10
                    if not (run / "summary.json").is_file():
                        groundup("train", *common, "--lr", lr, "--epochs", str(epochs), "--quiet", "--out", str(run))
                    summary = json.loads((run / "summary.json").read_text())
                    used = summary["config"]["lr"]
                    print(f"{name}\t{arch}\t{opt}\t{epochs}\t{rule}\t{used:.3g}\t{summary['final']['valid_acc']:.4f}",
                          flush=True)


if __name__ == "__main__":
    main()
