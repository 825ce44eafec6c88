"""Measure accuracy against the learning rate, and the LR finder's curve, over seeds (issue 20, point 2).

For every data set (`bench_lr_auto.py`'s, with its epochs), architecture, optimizer and seed: one
LR-finder curve (what `groundup lr-find` records) and one `groundup train` run (in this process: the
command's flags, read by its own parser, then `groundup.run.train.train`) at each lr of a grid. A suggestion rule can then be judged offline
against the whole accuracy-vs-lr curve of the same seed, and over many seeds, before the rule is
confirmed with real `--lr auto` runs (`bench_lr_auto.py`).

Every result is one JSON line in OUT/results.jsonl; a finished task is not run again, so the
script can be stopped and restarted. With `--jobs N` the tasks run in N processes at once (for a
machine with many cores or a GPU; the accuracies do not depend on it).

Run:  python benchmarks/lr_grid.py --sets mini val-split --seeds 0 1 2 --out runs/lr_grid
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_lr_auto import sets
from common import IMAGENETTE

ADAM_LRS = (0.0025, 0.005, 0.007, 0.01, 0.014, 0.02, 0.04)
SGD_LRS = (0.01, 0.03, 0.1, 0.2, 0.4, 0.8)


def run_task(task: dict) -> dict:
    """One grid point: the settings are read from the command-line flags by `groundup train`'s own parser."""
    import torch

    from groundup.cli import build_parser
    from groundup.commands.train import config_from_args
    from groundup.run.build import build_learner
    from groundup.run.config import auto_lr_rule
    from groundup.run.train import train

    torch.set_num_threads(task["threads"])
    lr = "auto" if task["lr"] == "find" else str(task["lr"])
    cfg = config_from_args(build_parser().parse_args(["train", *task["args"], "--lr", lr]))
    t0 = time.perf_counter()
    result = {k: task[k] for k in ("set", "arch", "opt", "seed", "lr", "epochs")}
    if task["lr"] == "find":
        learn = build_learner(cfg)
        try:
            found = learn.lr_find(**auto_lr_rule(cfg.opt))  # as `groundup lr-find` does
        finally:
            learn.dls.close()
        result.update(lrs=found.finder.lrs, losses=found.finder.losses, suggestion=found.lr, method=found.method)
    else:
        out = Path(tempfile.mkdtemp(prefix="lr_grid-"))
        try:
            summary = train(cfg, out=str(out / "run"), quiet=True)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        result.update(valid_acc=summary["final"]["valid_acc"], valid_loss=summary["final"]["valid_loss"],
                      train_loss=summary["final"].get("train_loss"))
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def safe_task(task: dict) -> dict:
    try:
        return run_task(task)
    except Exception as e:  # noqa: BLE001 - any failure is reported in the table, the grid goes on
        return {"error": repr(e), **{k: task[k] for k in ("set", "arch", "opt", "seed", "lr")}}


def key(r: dict) -> tuple:
    return (r["set"], r["arch"], r["opt"], r["seed"], str(r["lr"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["mini", "val-split"])
    p.add_argument("--archs", nargs="+", default=["simple_cnn", "resnet"])
    p.add_argument("--opts", nargs="+", default=["adam", "sgd"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--adam-lrs", nargs="*", type=float, default=list(ADAM_LRS))
    p.add_argument("--sgd-lrs", nargs="*", type=float, default=list(SGD_LRS))
    p.add_argument("--data", type=Path, default=IMAGENETTE)
    p.add_argument("--out", type=Path, default=Path("runs/lr_grid"))
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="data-loading processes per run")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=None, help="override every set's epochs (a quick try)")
    p.add_argument("--deadline", type=float, default=None, help="seconds after which no new task starts")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    done = {key(json.loads(line)) for line in results.read_text().splitlines()} if results.is_file() else set()
    grid = sets(args.data)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    tasks = []
    for seed, name, arch, opt in itertools.product(args.seeds, args.sets, args.archs, args.opts):
        data, epochs, _ = grid[name]
        epochs = args.epochs or epochs
        lrs = args.adam_lrs if opt == "adam" else args.sgd_lrs
        for lr in ["find", *lrs]:
            flags = [*data, "--arch", arch, "--opt", opt, "--seed", str(seed), "--epochs", str(epochs),
                     "--num-workers", str(args.workers), "--device", args.device]
            t = {"set": name, "arch": arch, "opt": opt, "seed": seed, "lr": lr, "epochs": epochs,
                 "args": flags, "threads": threads}
            if key(t) not in done:
                tasks.append(t)
    print(f"{len(tasks)} tasks to run ({len(done)} done), {args.jobs} at a time", flush=True)
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs, maxtasksperchild=20) as pool, results.open("a") as f:
        for res in pool.imap_unordered(safe_task, tasks):
            if "error" in res:  # one failed run must not lose the others
                print(f"failed: {res}", flush=True)
                continue
            f.write(json.dumps(res) + "\n")
            f.flush()
            shown = res.get("valid_acc", res.get("suggestion"))
            print(f"{time.perf_counter() - start:7.1f}s {res['set']:10} {res['arch']:10} {res['opt']:4} "
                  f"s{res['seed']} lr {res['lr']!s:7} -> {shown:.4f} ({res['seconds']} s)", flush=True)
            if args.deadline and time.perf_counter() - start > args.deadline:
                print("deadline reached: stopping", flush=True)
                pool.terminate()
                break

if __name__ == "__main__":
    main()
