"""Decoding images and the `Dataset` of (image, label index) pairs (walkthrough step 2)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from groundup.checks import check_int
from groundup.data.cache import BAD, FILLED, DecodeCache, DecodeCacheError
from groundup.data.files import label_files, parent_label, val2idx
from groundup.errors import GroundupError, GroundupWarning


class CorruptImageError(GroundupError, ValueError):
    """An image file that cannot be decoded; the message names the file."""


def open_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode an image file to a (size, size, 3) uint8 RGB array, squashed to a square.

    Grayscale, RGBA, CMYK and palette images are converted to RGB. JPEGs are decoded in
    draft mode: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (never below `size`), which
    saves most of the decoding work (`benchmarks/bench_data.py` measures it).
    """
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size, size))
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.array(im, dtype=np.uint8)  # a writable copy
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(f"cannot decode image file {path}: {e}") from e


class Dataset:
    """Images and their label indices: `ds[i]` is `(uint8 tensor (size, size, 3), int label)`.

    Args:
        files: image paths.
        vocab: `{label: index}`; built from the files' labels with `val2idx` when None.
        size: images are squashed to `size`×`size` pixels.
        label_func: the label of a file (default: its parent folder's name).
        cache: keep decoded images in a `DecodeCache` (uint8 memory map under `GROUNDUP_HOME`) so
            epochs after the first skip decoding; pass False to decode every time. Where the cache
            cannot be made (a full or read-only disk) a `GroundupWarning` says so and `cache` is None.
        skip_corrupt: on an undecodable file, warn and return None (which `collate` drops)
            instead of raising `CorruptImageError`.

    Example:
        >>> ds = Dataset(get_image_files("imagenette2-160/train"), size=64)
        >>> x, y = ds[0]          # x: (64, 64, 3) uint8, y: int
    """

    def __init__(self, files: Sequence[str | os.PathLike], vocab: dict[str, int] | None = None,
                 size: int = 64, label_func: Callable[[Path], str] = parent_label,
                 cache: bool = True, skip_corrupt: bool = False):
        check_int("Dataset", "size", size)
        self.files = [Path(f) for f in files]
        self.vocab = vocab if vocab is not None else val2idx(label_func(f) for f in self.files)
        self.labels = np.asarray(label_files(self.files, self.vocab, label_func), dtype=np.int64)
        self.size, self.skip_corrupt = size, skip_corrupt
        self.cache = None
        if cache and self.files:
            try:
                self.cache = DecodeCache(self.files, size)
            except DecodeCacheError as e:  # a full or read-only disk costs speed, never the run
                warnings.warn(f"{e}; going on without the decode cache (every epoch decodes the images again): "
                              f"free some space there or set GROUNDUP_HOME to a folder with room to make epochs "
                              f"after the first faster", GroundupWarning, stacklevel=2)
        self._all_cached = False

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"Dataset({len(self)} images, {len(self.vocab)} labels, size={self.size})"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        x = self._image(int(i))
        return None if x is None else (torch.from_numpy(x), int(self.labels[i]))

    def is_cached(self) -> bool:
        """True once every image is in the decode cache (then batches are a cheap gather)."""
        if not self._all_cached and self.cache is not None:
            self._all_cached = self.cache.n_filled() == len(self)
        return self._all_cached

    def get_batch(self, idxs: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The collated batch of `idxs` at once: ((n, size, size, 3) uint8, (n,) int64).

        With a warm cache this is one vectorised gather from the memory map, not n decodes.
        Corrupt files are dropped (with `skip_corrupt`) so the batch can be smaller than `idxs`.
        """
        idxs = np.asarray(idxs, dtype=np.int64)
        if self.cache is None:
            xs = [self._image(i) for i in idxs]
        else:
            flags = self.cache.flags(idxs)
            if (flags == FILLED).all():
                return torch.from_numpy(self.cache.read(idxs)), torch.from_numpy(self.labels[idxs])
            xs = [self._image(i) for i in idxs]
        keep = [k for k, x in enumerate(xs) if x is not None]
        if len(keep) < len(xs):
            xs, idxs = [xs[k] for k in keep], idxs[keep]
        xb = np.stack(xs) if xs else np.empty((0, self.size, self.size, 3), np.uint8)
        return torch.from_numpy(xb), torch.from_numpy(self.labels[idxs])

    def _image(self, i: int) -> np.ndarray | None:
        """Pixels of image `i`, from the cache when it holds them; None for a skipped corrupt file."""
        c = self.cache
        if c is not None:
            flag = c.flags(i)
            if flag == FILLED:
                return c.read([i])[0]  # a copy: a caller writing into it must not touch the cache
            if flag == BAD and self.skip_corrupt:
                return None
        try:
            x = open_image(self.files[i], self.size)
        except CorruptImageError as e:
            if not self.skip_corrupt:
                raise
            warnings.warn(f"skipping {e}", stacklevel=2)
            if c is not None:
                c.mark_bad(i)
            return None
        if c is not None:
            c.write(i, x)
        return x
