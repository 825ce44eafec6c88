"""End to end: epochs on imagenette2-224 at 64 px (simple_cnn, bs 128, SGD lr 0.1), groundup vs hand-written.

  reference  a hand-written loop over torch.utils.data.DataLoader with a PIL Dataset
             (decode + resize + normalize per item in workers, float batches)
  groundup   Learner + ImageDataLoaders.from_folder + SetupLearnerCB + TrackResults
             (epoch 1 decodes and fills the decode cache; later epochs read it)

Each variant runs in a fresh process with a cold decode cache; both use the same number of
workers. Prints seconds per epoch (training + validation) and the ratios.

Run:  python benchmarks/bench_e2e.py [--epochs 2] [--num-workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import PILDataset, Timer, peak_rss_mib, require_data, warm_page_cache

from groundup.data.files import get_image_files, grandparent_split, parent_label, val2idx
from groundup.losses import cross_entropy
from groundup.metrics import accuracy
from groundup.nn.models import simple_cnn


def run_reference(args):
    train_files, valid_files = grandparent_split(get_image_files(require_data()))
    vocab = val2idx(parent_label(f) for f in train_files)
    kw = {"num_workers": args.num_workers, "persistent_workers": args.num_workers > 0}
    train = torch.utils.data.DataLoader(PILDataset(train_files, vocab), 128, shuffle=True, **kw)
    valid = torch.utils.data.DataLoader(PILDataset(valid_files, vocab), 256, **kw)
    torch.manual_seed(0)
    model = simple_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    times, accs = [], []
    for _ in range(args.epochs):
        with Timer() as t:
            model.train()
            for xb, yb in train:
                loss = cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                opt.zero_grad()
            model.eval()
            correct, n = torch.zeros(()), 0
            with torch.no_grad():
                for xb, yb in valid:
                    correct += accuracy(model(xb), yb) * len(yb)
                    n += len(yb)
            accs.append(correct.item() / n)
        times.append(t.seconds)
    return {"epoch_seconds": times, "valid_acc": accs}


def run_groundup(args):
    os.environ["GROUNDUP_HOME"] = tempfile.mkdtemp(prefix="bench-e2e-")  # cold decode cache
    from groundup.callbacks.setup import SetupLearnerCB
    from groundup.callbacks.tracking import TrackResults
    from groundup.data.folder import ImageDataLoaders
    from groundup.learner import Learner

    dls = ImageDataLoaders.from_folder(require_data(), size=64, bs=128, num_workers=args.num_workers, seed=0)
    torch.manual_seed(0)
    track = TrackResults(print_table=False)
    learn = Learner(simple_cnn(), dls, cross_entropy, lr=0.1, cbs=[SetupLearnerCB(), track], progress=False)
    learn.fit(args.epochs)
    dls.close()
    return {"epoch_seconds": [r["seconds"] for r in track.history],
            "valid_acc": [r["valid_acc"] for r in track.history]}


VARIANTS = {"reference": run_reference, "groundup": run_groundup}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        out = VARIANTS[args.variant](args)
        out["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(out))
        return
    warm_page_cache(get_image_files(require_data()))
    res = {}
    for name in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", name, "--epochs", str(args.epochs),
               "--num-workers", str(args.num_workers)]
        res[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    r, g = res["reference"]["epoch_seconds"], res["groundup"]["epoch_seconds"]
    print(f"imagenette2-224 (9469 train + 3925 valid), 64 px, simple_cnn, bs 128, {args.num_workers} workers, "
          f"{os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{'epoch':>5}{'reference s':>13}{'groundup s':>12}{'speed-up':>10}{'ref acc':>9}{'gu acc':>8}")
    for e in range(args.epochs):
        print(f"{e + 1:>5}{r[e]:>13.1f}{g[e]:>12.1f}{r[e] / g[e]:>9.2f}x"
              f"{res['reference']['valid_acc'][e]:>9.3f}{res['groundup']['valid_acc'][e]:>8.3f}")
    if args.epochs > 1:
        print(f"groundup later epochs vs its first: {g[0] / (sum(g[1:]) / len(g[1:])):.2f}x faster "
              "(the decode cache)")
    print(f"peak RSS MiB: reference {res['reference']['peak_rss_mib']:.0f}, "
          f"groundup {res['groundup']['peak_rss_mib']:.0f}")


if __name__ == "__main__":
    main()
