"""Images that appear in two sets (train and valid): exact copies by content hash, near copies by a
perceptual hash of the decoded thumbnails.

    content_hashes(files)            SHA-1 of each file's bytes: the same file, byte for byte
    perceptual_hashes(ds)            a 64-bit difference hash (dHash) of each image of a `Dataset`,
                                     from the pixels its decode cache already holds
    find_duplicates(train, valid)    the pairs (train file, valid file) that are copies, with the distance

The difference hash (Krawetz, "Kind of like that", 2013): the image in grayscale, shrunk to 9 x 8
pixels; bit k says whether pixel k is brighter than its right-hand neighbour. A re-encoded, resized
or slightly recoloured copy keeps nearly every bit; two different photos differ in about half of
them, but smooth pictures (a sky, an object on white) share most bits with other smooth pictures.
So two images count as near copies when their hashes differ in at most `NEAR_BITS` bits (the cheap
search over every pair) and their 16 x 16 colour thumbnails differ by at most `NEAR_LEVELS` grey
levels on average (the check of each candidate).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FLAT_STD", "NEAR_BITS", "NEAR_LEVELS", "Duplicate", "content_hashes", "dhash", "find_duplicates", "perceptual_hashes"]

# Measured on imagenette2-224, train vs val (README, "When training goes wrong"): 19 validation images
# have a training image within 4 bits, and looked at, the pairs are different photos of smooth scenes
# (sky, an object on white); no validation thumbnail is nearer than 7.1 levels to any training one.
# A copy shrunk by a sixth and re-encoded at JPEG quality 70 stays within 1 bit and 3.7 levels of its
# original (five pictures, as in tests/test_duplicates.py).
NEAR_BITS = 4  # at most this many of the 64 hash bits differ ...
NEAR_LEVELS = 5.0  # ... and the thumbnails differ by at most this many levels (0-255) on average
# A thumbnail whose grayscale std is below this (in 0-255 levels) is nearly flat: its hash is noise
# or all zeros, so it is left out of the near-copy search (exact copies still count).
FLAT_STD = 2.0


class Duplicate(NamedTuple):
    """A training and a validation image that are the same picture."""

    train: str  # the training image's file
    valid: str  # the validation image's file
    kind: str  # "exact" (the same bytes) or "near" (perceptual hashes `distance` bits apart)
    distance: int  # differing hash bits (0 for an exact copy)


def content_hashes(files: Sequence[str | os.PathLike]) -> list[str]:
    """The SHA-1 of each file's bytes (hex)."""
    out = []
    for f in files:
        with open(f, "rb") as fh:
            out.append(hashlib.file_digest(fh, "sha1").hexdigest())
    return out


def dhash(pixels: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference hashes of uint8 images (n, H, W, 3).

    Returns (n,) uint64 hashes, (n,) grayscale stds of the 9 x 8 thumbnails, and (n, 16, 16, 3)
    float32 colour thumbnails (for checking a candidate pair).

    Example:
        >>> hashes, stds, thumbs = dhash(np.zeros((2, 64, 64, 3), np.uint8))
    """
    x = torch.as_tensor(np.asarray(pixels)).float()  # (n, H, W, 3)
    gray = (x @ torch.tensor([0.299, 0.587, 0.114]))[:, None]  # (n, 1, H, W), ITU-R 601 luma
    small = F.adaptive_avg_pool2d(gray, (8, 9))[:, 0]  # (n, 8, 9)
    bits = (small[:, :, :-1] > small[:, :, 1:]).reshape(len(x), 64).numpy()  # (n, 64)
    hashes = np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)  # (n,)
    thumbs = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), 16).permute(0, 2, 3, 1)  # (n, 16, 16, 3)
    return hashes, small.reshape(len(x), -1).std(dim=1).numpy(), thumbs.numpy()


def perceptual_hashes(ds, chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`dhash` of every image of a `Dataset`, read `chunk` at a time (from its decode cache when filled).

    An image that cannot be read (skipped as corrupt) gets std NaN, which keeps it out of every
    near-copy pair.
    """
    n = len(ds)
    hashes, stds, thumbs = np.zeros(n, np.uint64), np.full(n, np.nan), np.zeros((n, 16, 16, 3), np.float32)
    for start in range(0, n, chunk):
        idxs = np.arange(start, min(start + chunk, n))
        xb = ds.get_batch(idxs)[0]
        if len(xb) == len(idxs):
            hashes[idxs], stds[idxs], thumbs[idxs] = dhash(xb)
            continue
        for i in idxs:  # some were skipped as unreadable: one at a time, to know which
            item = ds[int(i)]
            if item is not None:
                h, s, t = dhash(item[0][None])
                hashes[i], stds[i], thumbs[i] = h[0], s[0], t[0]
    return hashes, stds, thumbs


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits differing between every hash of `a` (n,) and every one of `b` (m,): (n, m) int."""
    return np.bitwise_count(a[:, None] ^ b[None, :])


def find_duplicates(train_files: Sequence[str | os.PathLike], valid_files: Sequence[str | os.PathLike],
                    train_ds=None, valid_ds=None, max_distance: int = NEAR_BITS,
                    max_levels: float = NEAR_LEVELS, chunk: int = 512) -> list[Duplicate]:
    """The (train, valid) pairs that are copies: the same bytes, or (with the data sets) near copies.

    Args:
        train_files, valid_files: the two sets' image files.
        train_ds, valid_ds: their `Dataset`s, for the near-copy search on decoded thumbnails
            (left out when either is None).
        max_distance: the most hash bits two near copies may differ in.
        max_levels: the most their thumbnails may differ by, in levels (0-255) on average.
        chunk: validation images compared at a time (memory: chunk x len(train) bytes).

    Returns:
        every exact pair, then every near pair not already exact, each sorted by file name.
    """
    train_files, valid_files = [str(f) for f in train_files], [str(f) for f in valid_files]
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(content_hashes(train_files)):
        by_hash.setdefault(h, []).append(i)
    pairs: dict[tuple[int, int], Duplicate] = {}
    for j, h in enumerate(content_hashes(valid_files)):
        for i in by_hash.get(h, ()):
            pairs[i, j] = Duplicate(train_files[i], valid_files[j], "exact", 0)
    if train_ds is not None and valid_ds is not None and len(train_ds) and len(valid_ds):
        th, ts, tt = perceptual_hashes(train_ds)
        vh, vs, vt = perceptual_hashes(valid_ds)
        train_ok, valid_ok = np.flatnonzero(ts >= FLAT_STD), np.flatnonzero(vs >= FLAT_STD)
        for start in range(0, len(valid_ok), chunk):
            vj = valid_ok[start:start + chunk]
            d = _hamming(vh[vj], th[train_ok])  # (chunk, n_train_ok)
            for r, c in zip(*np.nonzero(d <= max_distance)):
                i, j = int(train_ok[c]), int(vj[r])
                if (i, j) not in pairs and np.abs(tt[i] - vt[j]).mean() <= max_levels:
                    pairs[i, j] = Duplicate(train_files[i], valid_files[j], "near", int(d[r, c]))
    exact = sorted((p for p in pairs.values() if p.kind == "exact"), key=lambda p: (p.valid, p.train))
    near = sorted((p for p in pairs.values() if p.kind == "near"), key=lambda p: (p.distance, p.valid, p.train))
    return exact + near
