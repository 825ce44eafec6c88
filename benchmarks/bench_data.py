"""Images per second delivered as normalized float NCHW batches (bs 128, 64 px) from imagenette2-224.

Compares, each variant in a fresh process, the same number of worker processes:
  reference    torch.utils.data.DataLoader over a PIL Dataset (decode + resize + normalize per item)
  walkthrough  the walkthrough's loader: a ProcessPoolExecutor opened every epoch, the dataset
               pickled with every batch
  groundup     ImageDataLoaders.from_folder: draft-mode decoding, persistent workers, uint8 batches,
               Normalize + to_nchw on the whole batch; epoch 1 fills the decode cache, later
               epochs read it

Run:  python benchmarks/bench_data.py [--num-workers 2] [--epochs 3] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import PILDataset, Timer, median, peak_rss_mib, require_data, warm_page_cache

from groundup.data.files import get_image_files, grandparent_split, parent_label, val2idx
from groundup.data.folder import ImageDataLoaders
from groundup.data.transforms import Normalize, to_nchw


def train_files(limit):
    files, _ = grandparent_split(get_image_files(require_data()))
    if limit:
        files = [files[i] for i in np.random.default_rng(0).permutation(len(files))[:limit]]
    return files, val2idx(parent_label(f) for f in files)


def run_reference(args):
    files, vocab = train_files(args.limit)
    dl = torch.utils.data.DataLoader(PILDataset(files, vocab), batch_size=128, shuffle=True,
                                     num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    times = []
    for _ in range(args.epochs):
        with Timer() as t:
            n = sum(len(yb) for xb, yb in dl)
        times.append(t.seconds)
    return {"images": n, "epoch_seconds": times}


def _walkthrough_collate(idxs, ds):
    xs, ys = zip(*(ds[i] for i in idxs))
    return torch.stack(xs), torch.tensor(ys)


def run_walkthrough(args):
    files, vocab = train_files(args.limit)
    ds = PILDataset(files, vocab)
    times = []
    for _ in range(args.epochs):
        with Timer() as t:
            idxs = np.random.permutation(len(ds))
            chunks = [idxs[i:i + 128] for i in range(0, len(ds), 128)]
            with ProcessPoolExecutor(args.num_workers) as ex:  # new pool each epoch, ds pickled per batch
                n = sum(len(yb) for xb, yb in ex.map(partial(_walkthrough_collate, ds=ds), chunks))
        times.append(t.seconds)
    return {"images": n, "epoch_seconds": times}


def run_groundup(args):
    os.environ["GROUNDUP_HOME"] = tempfile.mkdtemp(prefix="bench-groundup-")  # a cold decode cache
    files, _ = train_files(args.limit)
    root = tempfile.mkdtemp(prefix="bench-data-")
    for f in files:  # a folder with only the chosen training files (links, no copies)
        dst = os.path.join(root, "train", f.parent.name, f.name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.symlink(f, dst)
    os.makedirs(os.path.join(root, "val", files[0].parent.name))
    os.symlink(files[0], os.path.join(root, "val", files[0].parent.name, files[0].name))
    with Timer() as setup:  # the scan, and decoding the STATS_IMAGES images the statistics are measured on
        dls = ImageDataLoaders.from_folder(root, size=64, bs=128, num_workers=args.num_workers, seed=0)
    norm = Normalize(*dls.stats)
    times = []
    for _ in range(args.epochs):
        with Timer() as t:
            n = 0
            for xb, yb in dls.train:
                x = to_nchw(norm(xb))  # (128, 3, 64, 64) float32, what the model gets
                n += len(yb)
        times.append(t.seconds)
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 64, 64)
    dls.close()
    return {"images": n, "epoch_seconds": times, "setup_seconds": setup.seconds}


VARIANTS = {"reference": run_reference, "walkthrough": run_walkthrough, "groundup": run_groundup}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=0, help="use this many training images (0: all)")
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        out = VARIANTS[args.variant](args)
        out["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(out))
        return
    files, _ = train_files(args.limit)
    warm_page_cache(files)
    print(f"{len(files)} images, bs 128, 64 px, {args.num_workers} workers, {os.cpu_count()} cores, "
          f"torch {torch.__version__}")
    results = {}
    for name in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", name, "--num-workers", str(args.num_workers),
               "--epochs", str(args.epochs), "--limit", str(args.limit)]
        results[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    ref = results["reference"]
    ref_rate = ref["images"] / median(ref["epoch_seconds"])
    print(f"{'variant':<26}{'images/s':>10}{'vs reference':>14}{'peak RSS MiB':>14}")
    rows = [("reference (torch DL + PIL)", ref_rate, ref["peak_rss_mib"])]
    w = results["walkthrough"]
    rows.append(("walkthrough (pool/epoch)", w["images"] / median(w["epoch_seconds"]), w["peak_rss_mib"]))
    g = results["groundup"]
    rows.append(("groundup first epoch", g["images"] / g["epoch_seconds"][0], g["peak_rss_mib"]))
    # from_folder decodes the images its statistics come from (into the cache) before the first epoch
    rows.append(("  + from_folder's setup", g["images"] / (g["epoch_seconds"][0] + g["setup_seconds"]),
                 g["peak_rss_mib"]))
    rows.append(("groundup cached epochs", g["images"] / median(g["epoch_seconds"][1:]), g["peak_rss_mib"]))
    for name, rate, rss in rows:
        print(f"{name:<26}{rate:>10.0f}{rate / ref_rate:>13.2f}x{rss:>14.0f}")
    print("(reference and walkthrough: median epoch; groundup cached: median of epochs 2..; "
          "peak RSS: the process plus its largest child)")


if __name__ == "__main__":
    main()
