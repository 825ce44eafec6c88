"""Benchmark: what a trained body buys on a small data set (issue 22).

Imagenette's ten classes are cut in two halves (sorted by folder name: A the first five, B the
other five). A body is trained on all of A's training images (`resnet_fast`, 64 px, the fast
recipe's optimizer: AdamW one-cycle, lr 3e-3, wd 0.05 not on norms). Then, for each seed, a small
training set is drawn from B: `--frac` (10 %) of each B class's training images; validation is all
of B's validation images. On it, two models are trained and compared:

    fine-tune    the body (`Learner.load(..., with_head=False)`, a new 5-class head), then
                 `learn.fine_tune(TUNE_EPOCHS, base_lr, freeze_epochs)` (fastai's recipe), normalized
                 with the body's statistics
    scratch      the same architecture from random weights, `fit_one_cycle` at the fast recipe's lr,
                 for as many epochs as fit in the fine-tune's wall time (its seconds per epoch are
                 measured by a first, one-epoch run that is not counted)

Both see the same images, the same batch size, no augmentation. The decode cache (GROUNDUP_HOME)
is filled before anything is timed, so neither pays for JPEG decoding. Nothing is copied: the
halves are lists of the files in place.

What `train_bn` buys: `--no-scratch` with and without `--no-train-bn` (e.g. on the shipped set,
`--data src/groundup/datasets/imagenette-mini --frac 1 --tune-epochs 1 --freeze-epochs 3`).

Run:  python benchmarks/bench_transfer.py [--seeds 0 1 2] [--body-epochs 5] [--tune-epochs 5] [--frac 0.1]
      python benchmarks/bench_transfer.py --classes 4 --body-epochs 1 --tune-epochs 1 --max-per-class 40  (a check)
The body is saved to GROUNDUP_HOME/bench_transfer/body-*.pt and reused by a later run with the same settings.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import IMAGENETTE, require_data

from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.data.files import get_image_files, parent_label
from groundup.data.folder import image_stats
from groundup.data.images import Dataset
from groundup.data.loader import DataLoader, DataLoaders
from groundup.data.preprocessing import Preprocessing
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import resnet_fast
from groundup.run.config import opt_func_for
from groundup.utils.paths import groundup_home

ARCH = "resnet_fast"


def files_by_class(root: Path, split: str) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in sorted(get_image_files(root / split)):
        out.setdefault(parent_label(f), []).append(f)
    return out


def loaders(train_files: list[Path], valid_files: list[Path], vocab: list[str], args,
            stats: tuple | None = None) -> DataLoaders:
    """Loaders over file lists (no copies), with the data's own statistics unless `stats` is given."""
    v2i = {label: i for i, label in enumerate(vocab)}
    train_ds, valid_ds = Dataset(train_files, v2i, size=args.size), Dataset(valid_files, v2i, size=args.size)
    train = DataLoader(train_ds, args.bs, shuffle=True, num_workers=args.num_workers, seed=0)
    valid = DataLoader(valid_ds, 2 * args.bs, num_workers=args.num_workers, seed=0)
    if stats is None:
        stats = image_stats(train_ds, np.arange(min(len(train_ds), 1024)))
    return DataLoaders(train, valid, preprocessing=Preprocessing(*stats, size=args.size, vocab=vocab))


def warm(dls: DataLoaders) -> None:
    """Decode every image once into the cache, so no timed run pays for it."""
    for dl in (dls.train, dls.valid):
        for _ in dl:
            pass


def learner(model, dls, args, lr, train_bn: bool = True) -> Learner:
    return Learner(model, dls, cross_entropy, lr=lr, opt_func=opt_func_for("adam", wd=0.05, wd_norms=False),
                   cbs=[SetupLearnerCB("cpu"), TrackResults(print_table=args.verbose)], train_bn=train_bn,
                   progress=False)


def train_body(classes_a, train_a, valid_a, args) -> Path:
    """Train (or reuse) the body on half A; return its checkpoint."""
    n = sum(len(train_a[c]) for c in classes_a)
    path = groundup_home() / "bench_transfer" / f"body-{len(classes_a)}cls-{n}img-{args.size}px-{args.body_epochs}ep.pt"
    if path.is_file() and not args.retrain_body:
        print(f"body: reusing {path}")
        return path
    dls = loaders([f for c in classes_a for f in train_a[c]], [f for c in classes_a for f in valid_a[c]], classes_a, args)
    warm(dls)
    torch.manual_seed(0)
    learn = learner(resnet_fast(n_classes=len(classes_a)), dls, args, args.lr)
    start = time.perf_counter()
    learn.fit_one_cycle(args.body_epochs, args.lr, anneal="cos")
    seconds = time.perf_counter() - start
    print(f"body: {ARCH} on half A ({', '.join(classes_a)}; {n} images), {args.body_epochs} epochs: "
          f"valid_acc {learn.history[-1]['valid_acc']:.4f} in {seconds:.0f} s")
    learn.save(path)
    dls.train.close(), dls.valid.close()
    return path


def one_seed(seed: int, body: Path, classes_b, train_b, valid_b, args) -> dict:
    rng = np.random.default_rng(seed)
    small = []
    for c in classes_b:
        files = train_b[c]
        k = max(1, round(args.frac * len(files)))
        small += [files[i] for i in sorted(rng.choice(len(files), size=k, replace=False))]
    valid = [f for c in classes_b for f in valid_b[c]]
    body_stats = Preprocessing.from_dict(torch.load(body, weights_only=True)["preprocessing"]).stats
    tuned_dls = loaders(small, valid, classes_b, args, stats=body_stats)
    scratch_dls = loaders(small, valid, classes_b, args)
    warm(tuned_dls)

    torch.manual_seed(seed)
    tuned = learner(resnet_fast(n_classes=len(classes_b)), tuned_dls, args, args.base_lr, train_bn=args.train_bn)
    tuned.load(body, with_head=False)
    start = time.perf_counter()
    tuned.fine_tune(args.tune_epochs, base_lr=args.base_lr, freeze_epochs=args.freeze_epochs)
    tuned_s = time.perf_counter() - start
    tuned_acc = tuned.history[-1]["valid_acc"]
    if args.no_scratch:
        print(f"seed {seed}: {len(small)} train / {len(valid)} valid images; fine-tune (train_bn={args.train_bn}) "
              f"{tuned_acc:.4f} in {tuned_s:.0f} s", flush=True)
        return {"seed": seed, "n_train": len(small), "tuned_acc": tuned_acc, "tuned_s": tuned_s}

    torch.manual_seed(seed)  # how long one scratch epoch takes (not counted)
    probe = learner(resnet_fast(n_classes=len(classes_b)), scratch_dls, args, args.lr)
    start = time.perf_counter()
    probe.fit(1)
    per_epoch = time.perf_counter() - start
    epochs = max(1, round(tuned_s / per_epoch))
    torch.manual_seed(seed)
    scratch = learner(resnet_fast(n_classes=len(classes_b)), scratch_dls, args, args.lr)
    start = time.perf_counter()
    scratch.fit_one_cycle(epochs, args.lr, anneal="cos")
    scratch_s = time.perf_counter() - start
    row = {"seed": seed, "n_train": len(small), "n_valid": len(valid), "tuned_acc": tuned_acc, "tuned_s": tuned_s,
           "scratch_acc": scratch.history[-1]["valid_acc"], "scratch_s": scratch_s, "scratch_epochs": epochs}
    print(f"seed {seed}: {len(small)} train / {len(valid)} valid images; fine-tune {tuned_acc:.4f} in {tuned_s:.0f} s; "
          f"scratch {row['scratch_acc']:.4f} in {scratch_s:.0f} s ({epochs} epochs)", flush=True)
    for dls in (tuned_dls, scratch_dls):
        dls.train.close(), dls.valid.close()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=IMAGENETTE)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--classes", type=int, default=10, help="classes used (the first N folders), split in two halves")
    p.add_argument("--max-per-class", type=int, default=None, help="cap the images per class (for a quick check)")
    p.add_argument("--frac", type=float, default=0.1, help="fraction of half B's training images to fine-tune on")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--body-epochs", type=int, default=5)
    p.add_argument("--tune-epochs", type=int, default=5)
    p.add_argument("--freeze-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-3, help="the body's and the scratch model's one-cycle peak")
    p.add_argument("--base-lr", type=float, default=1e-2,
                   help="fine_tune's base_lr (1e-2: the rates of groundup train --init at its default --lr 0.01, "
                        "lr/200 to lr/2 after the frozen epochs; fastai's default is 2e-3)")
    p.add_argument("--retrain-body", action="store_true")
    p.add_argument("--train-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="norm layers train while the body is frozen (Learner's train_bn)")
    p.add_argument("--no-scratch", action="store_true", help="fine-tune only (e.g. to compare --no-train-bn)")
    p.add_argument("--verbose", action="store_true", help="print every epoch's results")
    args = p.parse_args()
    root = require_data(args.data)
    train, valid = files_by_class(root, "train"), files_by_class(root, "val")
    classes = sorted(train)[:args.classes]
    if args.max_per_class:
        train = {c: fs[:args.max_per_class] for c, fs in train.items()}
        valid = {c: fs[:max(1, args.max_per_class // 4)] for c, fs in valid.items()}
    half = len(classes) // 2
    classes_a, classes_b = classes[:half], classes[half:]
    body = train_body(classes_a, train, valid, args)
    rows = [one_seed(s, body, classes_b, train, valid, args) for s in args.seeds]

    def mean_sd(key: str) -> str:
        xs = [r[key] for r in rows]
        return f"{statistics.mean(xs):.3f}" + (f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else "")

    if args.no_scratch:
        print(f"\nfine-tune, train_bn={args.train_bn}: valid_acc {mean_sd('tuned_acc')}, seconds {mean_sd('tuned_s')} "
              f"(seeds {args.seeds})")
        return
    print(f"\n| half B, {rows[0]['n_train']} training images ({args.frac:.0%}) | valid accuracy | seconds |")
    print("|---|---|---|")
    print(f"| fine-tuned from the half-A body (fine_tune({args.tune_epochs}), {args.freeze_epochs} frozen) | "
          f"{mean_sd('tuned_acc')} | {mean_sd('tuned_s')} |")
    print(f"| from scratch, same wall time ({', '.join(str(r['scratch_epochs']) for r in rows)} epochs) | "
          f"{mean_sd('scratch_acc')} | {mean_sd('scratch_s')} |")
    print(f"(seeds {args.seeds}; mean ± sd)")


if __name__ == "__main__":
    main()
