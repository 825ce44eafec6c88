"""Shared pieces of the benchmarks: the data set location, a PIL reference dataset, timing helpers."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGENETTE = Path(os.environ.get("GROUNDUP_BENCH_DATA",
                                 Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette2-224"))


def require_data(path: Path = IMAGENETTE) -> Path:
    if not (path / "train").is_dir():
        sys.exit(f"benchmark data not found: {path} (set GROUNDUP_BENCH_DATA to an imagenette folder)")
    return path


class PILDataset(torch.utils.data.Dataset):
    """The usual PyTorch recipe: decode with PIL, resize, to float CHW, normalize, per item."""

    def __init__(self, files, vocab, size=64, mean=(0.46, 0.46, 0.43), std=(0.26, 0.26, 0.28)):
        self.files, self.vocab, self.size = files, vocab, size
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        f = self.files[i]
        im = Image.open(f).convert("RGB").resize((self.size, self.size))
        x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std, self.vocab[f.parent.name]


def warm_page_cache(files) -> None:
    """Read every file once so no variant pays for the first read from disk."""
    for f in files:
        with open(f, "rb") as fh:
            fh.read()


def peak_rss_mib() -> float:
    """Peak resident memory of this process and of its largest waited-for child, in MiB."""
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def median(xs):
    return statistics.median(xs)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
