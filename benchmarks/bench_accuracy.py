"""Benchmark: time to accuracy of a recipe on Imagenette (valid accuracy against wall seconds).

Each seed runs `python -m groundup train --recipe RECIPE --data IMAGENETTE --seed S` in a fresh
process with a fresh, empty `GROUNDUP_HOME` (so the decode cache starts cold and every image is
read from its JPEG file) and a fresh `TORCHINDUCTOR_CACHE_DIR` (so torch.compile starts cold too),
and the clock starts when the process is started: it counts the start-up,
the scan of the folders, the cold decode, compiling, every epoch with its validation, and the final
flip-TTA evaluation. The benchmark watches the run folder: each time `metrics.csv` gains an epoch,
that epoch's valid accuracy is stamped with the seconds since the start; when `summary.json`
appears, so is the TTA accuracy.

Writes into --out (default benchmarks/results/):
    time_to_accuracy.csv   seed, seconds, epoch, valid_acc, kind ("epoch" or "tta")
    time_to_accuracy.png   valid accuracy against seconds, one line per seed, with lines at 0.85,
                           0.80 and 0.768 and fastai's measured point (xresnet18, 5 epochs, 766 s)
and prints, per seed, the seconds to reach 0.768, 0.80 and 0.85, the final accuracies and the total.

fastai's point is the reference measured on the same 2-core machine (issue 15): fastai's xresnet18
with flips, 64 px, fit_one_cycle(5, 3e-3): 0.768 after 766 s of training.

Run:  python benchmarks/bench_accuracy.py [--seeds 0 1 2] [--recipe fast] [--out DIR] [-- TRAIN FLAGS...]
      (flags after `--` go to `groundup train`, e.g. `-- --epochs 12 --no-tta`)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import IMAGENETTE, require_data

LINES = (0.85, 0.80, 0.768)
FASTAI = (766.0, 0.768)  # seconds, valid accuracy: fastai xresnet18, 5 epochs, on the same machine


def read_epochs(path: Path) -> list[dict]:
    try:
        with path.open() as f:
            return [row for row in csv.DictReader(f) if row.get("valid_acc")]
    except (FileNotFoundError, csv.Error):
        return []


def run_seed(seed: int, recipe: str, data: Path, out: Path, extra: list[str], poll: float = 0.2) -> list[dict]:
    """Train one seed in a fresh process and GROUNDUP_HOME; return rows (seconds, epoch, valid_acc, kind)."""
    run_dir = out / f"run-seed{seed}"
    with tempfile.TemporaryDirectory(prefix="groundup-home-") as home:
        # A fresh inductor cache too: compiling starts cold, as on a first run (a warm one compiles faster).
        env = {**os.environ, "GROUNDUP_HOME": home, "TORCHINDUCTOR_CACHE_DIR": os.path.join(home, "inductor")}
        cmd = [sys.executable, "-m", "groundup", "train", "--recipe", recipe, "--data", str(data),
               "--seed", str(seed), "--out", str(run_dir), "--quiet", *extra]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env)
        rows: list[dict] = []
        summary = None
        while True:
            done = proc.poll() is not None
            for row in read_epochs(run_dir / "metrics.csv")[len(rows):]:
                rows.append({"seed": seed, "seconds": round(time.perf_counter() - start, 1),
                             "epoch": int(row["epoch"]), "valid_acc": float(row["valid_acc"]), "kind": "epoch"})
                print(f"  seed {seed}: epoch {row['epoch']} valid_acc {float(row['valid_acc']):.4f} "
                      f"at {rows[-1]['seconds']:.0f} s", flush=True)
            if summary is None and (run_dir / "summary.json").is_file():
                seconds = round(time.perf_counter() - start, 1)
                try:
                    summary = json.loads((run_dir / "summary.json").read_text())
                except json.JSONDecodeError:  # caught mid-write (it is written atomically, but be safe)
                    summary = None
                if summary is not None and summary.get("tta_acc") is not None:
                    rows.append({"seed": seed, "seconds": seconds, "epoch": rows[-1]["epoch"] if rows else -1,
                                 "valid_acc": summary["tta_acc"], "kind": "tta"})
                    print(f"  seed {seed}: flip TTA valid_acc {summary['tta_acc']:.4f} at {seconds:.0f} s", flush=True)
            if done:
                break
            time.sleep(poll)
        if proc.returncode != 0:
            sys.exit(f"seed {seed}: groundup train exited with status {proc.returncode}")
    total = round(time.perf_counter() - start, 1)
    rows.append({"seed": seed, "seconds": total, "epoch": rows[-1]["epoch"] if rows else -1,
                 "valid_acc": rows[-1]["valid_acc"] if rows else float("nan"), "kind": "exit"})
    return rows


def first_time(rows: list[dict], target: float) -> float | None:
    return next((r["seconds"] for r in rows if r["kind"] != "exit" and r["valid_acc"] >= target), None)


def plot(rows: list[dict], path: Path, recipe: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed and r["kind"] != "exit"]
        ax.plot([r["seconds"] for r in mine], [r["valid_acc"] for r in mine], marker="o", ms=3,
                label=f"groundup --recipe {recipe}, seed {seed}")
    for y, style in zip(LINES, ("-", "--", ":")):
        ax.axhline(y, color="gray", lw=0.8, ls=style)
        ax.text(5, y + 0.004, f"{y:.3g}", color="gray", fontsize=8)
    ax.axvline(600, color="tab:red", lw=0.8, ls="--")
    ax.text(605, 0.42, "600 s", color="tab:red", fontsize=8)
    ax.plot(*FASTAI, marker="*", ms=12, color="black", ls="none", label="fastai xresnet18, 5 epochs (766 s)")
    ax.set(xlabel="wall seconds from start (cold decode cache, 2 CPU cores)", ylabel="valid accuracy",
           title="Imagenette 64 px: valid accuracy against time", ylim=(0.4, 0.9), xlim=(0, 800))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipe", default="fast")
    p.add_argument("--data", type=Path, default=IMAGENETTE)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    data = require_data(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for seed in args.seeds:
        run_dir = args.out / f"run-seed{seed}"
        if run_dir.exists():
            sys.exit(f"{run_dir} exists; remove it or choose another --out")
        rows += run_seed(seed, args.recipe, data, args.out, extra)
    with (args.out / "time_to_accuracy.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["seed", "seconds", "epoch", "valid_acc", "kind"])
        w.writeheader()
        w.writerows(rows)
    plot(rows, args.out / "time_to_accuracy.png", args.recipe)
    print(f"\n{'seed':>4} {'to 0.768':>9} {'to 0.80':>8} {'to 0.85':>8} {'last epoch':>10} {'TTA':>7} {'total s':>8}")
    for seed in args.seeds:
        mine = [r for r in rows if r["seed"] == seed]
        epochs = [r for r in mine if r["kind"] == "epoch"]
        tta = next((r["valid_acc"] for r in mine if r["kind"] == "tta"), None)
        times = [first_time(mine, t) for t in (0.768, 0.80, 0.85)]
        cells = [f"{t:.0f}" if t is not None else "-" for t in times]
        print(f"{seed:>4} {cells[0]:>9} {cells[1]:>8} {cells[2]:>8} {epochs[-1]['valid_acc'] if epochs else float('nan'):>10.4f} "
              f"{tta if tta is not None else float('nan'):>7.4f} {mine[-1]['seconds']:>8.0f}")
    print(f"\nwrote {args.out / 'time_to_accuracy.csv'} and {args.out / 'time_to_accuracy.png'}")


if __name__ == "__main__":
    main()
