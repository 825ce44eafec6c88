"""ProgressBar overhead: the same fit with and without `ProgressBar(enabled=True, file=io.StringIO())`.

A tiny MLP (a few microseconds of arithmetic per batch) on preloaded batches, so that anything the
callback does per batch shows up: the device-side loss average in `after_loss`, the clock check in
`after_batch`, and the bar's redraws every `min_interval` seconds (drawn into a StringIO, so no
terminal speed is measured). Fits alternate between the two variants (order flipped every repeat)
so drifts in machine load hit both alike, and each is timed in CPU time of this process (one torch
thread), which other processes on a shared machine disturb far less than wall time; the ratio of
medians is printed (target <= 1.01x).

Run:  python benchmarks/bench_progress.py [--batches 500] [--repeats 21] [--hidden 64]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import median

from groundup.callbacks.progress import ProgressBar
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.layers import Linear, ReLU, Sequential


def make_batches(n, bs, n_in=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, n_in, generator=g), torch.randint(0, 10, (bs,), generator=g)) for _ in range(n)]


class Dls:
    def __init__(self, train, valid):
        self.train, self.valid = train, valid


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=500, help="training batches per fit (valid: a quarter)")
    p.add_argument("--bs", type=int, default=64, help="batch size")
    p.add_argument("--hidden", type=int, default=64, help="hidden units of the 32-hidden-10 MLP")
    p.add_argument("--repeats", type=int, default=21, help="timed fits per variant")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: least noise on a shared machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dls = Dls(make_batches(args.batches, args.bs), make_batches(max(1, args.batches // 4), args.bs, seed=1))
    torch.manual_seed(0)
    learn = Learner(Sequential(Linear(32, args.hidden), ReLU(), Linear(args.hidden, 10)), dls,
                    cross_entropy, lr=0.01, progress=False)  # the bar only where fit(with_progress) adds it

    def fit(with_progress: bool) -> float:
        cbs = [ProgressBar(enabled=True, file=io.StringIO())] if with_progress else []
        start = time.process_time()
        learn.fit(1, cbs=cbs)
        return time.process_time() - start

    fit(False), fit(True)  # warm-up
    times = {False: [], True: []}
    for r in range(args.repeats):
        for variant in ((False, True) if r % 2 == 0 else (True, False)):
            times[variant].append(fit(variant))
    plain, progress = median(times[False]), median(times[True])
    n = args.batches + len(dls.valid)
    print(f"MLP 32-{args.hidden}-10, bs {args.bs}, {args.batches} train + {len(dls.valid)} valid batches per fit, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"no ProgressBar : median {plain:.3f} CPU s/fit ({plain / n * 1e6:.0f} us/batch)")
    print(f"ProgressBar    : median {progress:.3f} CPU s/fit ({progress / n * 1e6:.0f} us/batch)")
    print(f"ratio with / without ProgressBar: {progress / plain:.4f}x (target <= 1.01x)")


if __name__ == "__main__":
    main()
