"""The "Learner from scratch" walkthrough, step by step, with groundup's public pieces.

On the shipped imagenette-mini (or --data FOLDER, e.g. ../shared/data/imagenette2-224, where the
published numbers below come from) at 64 px, bs 128, simple_cnn, SetupLearnerCB + TrackResults:
  1. fit(1) at lr 0.1                  (published: valid accuracy 0.21-0.30)
  2. the LR finder, which stops by itself and writes its plot
  3. OneCycle(0.1) over 8 epochs       (published: at least 0.47 valid accuracy)

Run:  python examples/walkthrough.py [--data PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from groundup import (
    DataLoader,
    DataLoaders,
    Dataset,
    Learner,
    Normalize,
    OneCycle,
    SetupLearnerCB,
    TrackResults,
    cross_entropy,
    get_image_files,
    parent_label,
    simple_cnn,
    untar_data,
    val2idx,
)
from groundup.data.files import grandparent_split
from groundup.data.transforms import batch_stats



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="an imagenette folder (train/ and val/); default: the shipped imagenette-mini")
    p.add_argument("--out", type=Path, default=Path("walkthrough-out"), help="where the plots go")
    p.add_argument("--epochs", type=int, default=8, help="epochs of the OneCycle run")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=42, help="seeds the weights and the shuffling")
    args = p.parse_args()
    if args.data is None:
        args.data = untar_data("imagenette-mini")  # shipped inside the package: no download
    if not args.data.is_dir():
        sys.exit(f"walkthrough.py: error: data folder not found: {args.data}; pass --data FOLDER (a folder "
                 f"with train/ and val/), or no --data for the shipped imagenette-mini")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    # Steps 1-2: files, labels from folder names, the train/valid split, Datasets.
    files = get_image_files(args.data)
    train_files, valid_files = grandparent_split(files)
    vocab = val2idx(parent_label(f) for f in files)
    train_ds, valid_ds = Dataset(train_files, vocab, size=64), Dataset(valid_files, vocab, size=64)
    print(f"{len(train_ds)} training and {len(valid_ds)} validation images, {len(vocab)} classes")

    # Steps 3-4: DataLoaders, statistics from a batch, Normalize (SetupLearnerCB applies it on the device).
    dls = DataLoaders(DataLoader(train_ds, 128, shuffle=True, num_workers=args.num_workers, seed=args.seed),
                      DataLoader(valid_ds, 256, num_workers=args.num_workers))
    xb, _yb = next(iter(dls.train))
    norm = Normalize(*batch_stats(xb))
    print(f"first batch: {tuple(xb.shape)} {xb.dtype}; {norm}")

    def learner() -> Learner:
        cbs = [SetupLearnerCB(normalize=norm), TrackResults()]
        return Learner(simple_cnn(), dls, cross_entropy, lr=0.1, cbs=cbs)

    # Steps 5-12: the model, the loss, SGD, the Learner: one epoch at lr 0.1.
    t = time.perf_counter()
    print("\n== fit(1), lr 0.1")
    learner().fit(1)
    print(f"({time.perf_counter() - t:.0f} s)")

    # Step 13a: the LR finder.
    t = time.perf_counter()
    suggestion = learner().lr_find(path=args.out / "lr_find.png")
    print(f"\n== LR finder: stopped after {len(suggestion.lrs)} batches at lr {suggestion.lrs[-1]:.3g}; "
          f"suggestion {suggestion.lr:.3g} ({suggestion.method}); plot: {args.out / 'lr_find.png'} "
          f"({time.perf_counter() - t:.0f} s)")

    # Step 13b: OneCycle(0.1) over 8 epochs.
    t = time.perf_counter()
    print(f"\n== OneCycle(0.1), {args.epochs} epochs")
    cycle = OneCycle(0.1)
    learner().fit(args.epochs, cbs=[cycle])
    cycle.plot(args.out / "one_cycle.png")
    print(f"({time.perf_counter() - t:.0f} s)")
    dls.close()
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
