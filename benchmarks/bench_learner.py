"""Learner overhead: `Learner` + SetupLearnerCB + TrackResults vs a hand-written PyTorch loop.

Both do the same work on the same preloaded uint8 NHWC batches (bs 128, 64 px): to float,
normalize, NHWC→NCHW, forward simple_cnn, cross-entropy, backward, SGD step, zero_grad, and
accumulate loss and accuracy on the device (read once per epoch). Epochs alternate between the two
so that drifts in machine load hit both alike, in the order A B B A A B ...: whichever side runs
right after the other runs about 3% slower (the caches and the allocator's free lists hold the
other model's memory), so a fixed order would charge that to one side. The ratio of medians is
printed (target ≤ 1.02×).

Run:  python benchmarks/bench_learner.py [--batches 20] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import Timer, median

from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.metrics import accuracy
from groundup.nn.models import simple_cnn
from groundup.optim import SGD
from groundup.utils.memory import keep_freed_memory

MEAN, STD = torch.tensor([0.46, 0.46, 0.43]), torch.tensor([0.26, 0.26, 0.28])


def make_batches(n, bs=128, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 256, (bs, size, size, 3), dtype=torch.uint8, generator=g),
             torch.randint(0, 10, (bs,), generator=g)) for _ in range(n)]


class Dls:
    def __init__(self, train, valid):
        self.train, self.valid, self.stats = train, valid, (MEAN, STD)


def hand_written_epoch(model, opt, train, valid):
    """What a careful user writes by hand: the same steps, no framework."""
    scale, bias = 1 / (STD * 255), -MEAN / STD
    sums = []
    for training, batches in ((True, train), (False, valid)):
        model.train(training)
        loss_sum = acc_sum = torch.zeros(())
        count = 0
        with torch.set_grad_enabled(training):
            for xb, yb in batches:
                x = torch.addcmul(bias, xb.float(), scale).permute(0, 3, 1, 2)
                preds = model(x)
                loss = cross_entropy(preds, yb)
                if training:
                    loss.backward()
                    opt.step()
                    opt.zero_grad()
                with torch.no_grad():
                    loss_sum = loss_sum + loss.detach() * len(yb)
                    acc_sum = acc_sum + accuracy(preds.detach(), yb) * len(yb)
                count += len(yb)
        sums.append((loss_sum.item() / count, acc_sum.item() / count))
    return sums


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=20, help="training batches per epoch")
    p.add_argument("--repeats", type=int, default=7, help="timed epochs per variant")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's thresholds as they are (default: keep_freed_memory(), as the CLI does)")
    args = p.parse_args()
    # Both sides run in this process: glibc handing freed activations back to the OS costs both about
    # 100,000 page faults per epoch (a fifth of the time, and most of the run-to-run noise).
    kept = False if args.system_malloc else keep_freed_memory()
    train, valid = make_batches(args.batches), make_batches(max(1, args.batches // 4), seed=1)
    torch.manual_seed(0)
    m_hand, m_learn = simple_cnn(), simple_cnn()
    m_learn.load_state_dict(m_hand.state_dict())
    opt = SGD(list(m_hand.parameters()), 0.1)
    learn = Learner(m_learn, Dls(train, valid), cross_entropy, lr=0.1,
                    cbs=[SetupLearnerCB(device="cpu"), TrackResults(print_table=False)], progress=False)
    hand_written_epoch(m_hand, opt, train, valid)  # warm-up
    learn.fit(1)
    t_hand, t_learn = [], []
    def time_hand():
        with Timer() as t:
            hand_written_epoch(m_hand, opt, train, valid)
        t_hand.append(t.seconds)

    def time_learner():
        with Timer() as t:
            learn.fit(1)
        t_learn.append(t.seconds)

    for i in range(args.repeats):  # A B, B A, A B, ...: neither side always runs second
        for run in ((time_hand, time_learner) if i % 2 == 0 else (time_learner, time_hand)):
            run()
    n = args.batches * 128
    print(f"simple_cnn, bs 128, 64 px, {args.batches} train + {len(valid)} valid batches per epoch, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{'freed memory kept (keep_freed_memory)' if kept else 'system malloc settings'}")
    print(f"hand-written loop: median {median(t_hand):.3f} s/epoch ({n / median(t_hand):.0f} train img/s)")
    print(f"groundup Learner : median {median(t_learn):.3f} s/epoch ({n / median(t_learn):.0f} train img/s)")
    print(f"ratio Learner / hand-written: {median(t_learn) / median(t_hand):.3f}x (target <= 1.02x)")


if __name__ == "__main__":
    main()
