"""Decoding images and the `Dataset` of (image, label index) pairs (walkthrough step 2).

Every image becomes 8-bit RGB, whatever its Pillow mode. Pillow's own `convert("RGB")` is right
for the 8-bit modes (1, L, P, RGB, RGBA, CMYK, LA, PA, YCbCr, ...: alpha is dropped) but clips
the wider ones, so a 16-bit grayscale PNG would come out all white. Those are scaled instead:

    I;16, I;16B, I;16L, I;16N   16-bit: v * 255 / 65535, rounded
    I                           32-bit integers holding 16-bit data (as PNG and most TIFF writers
                                store them): scaled the same way, values outside 0..65535 clipped
    F                           floats in [0, 1], the usual range of float images: v * 255,
                                rounded; values outside [0, 1] are clipped and NaN is 0

Images are turned the way the camera meant them: a photo whose EXIF orientation tag says it was
stored sideways or mirrored (phones do this) is rotated or flipped upright when it is decoded, as
`PIL.ImageOps.exif_transpose` does, in training, the decode cache, prediction, `Interpretation`
and export's preprocessing alike. `exif_orientation=False` (`--no-exif-orientation` on the command
line) uses the pixels as stored; a checkpoint records which was used, and prediction follows it.

An image with more than `max_pixels` pixels (default: Pillow's `Image.MAX_IMAGE_PIXELS`, about
89 million, a 9459 x 9459 image) is refused before it is decoded, as a `CorruptImageError`: a
decompression bomb (a 48 KB PNG of 20000 x 20000 pixels) would otherwise take gigabytes of memory.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from groundup.utils.checks import check_int
from groundup.data.cache import BAD, FILLED, DecodeCache, DecodeCacheError
from groundup.data.files import label_files, parent_label, val2idx
from groundup.utils.disk import format_size
from groundup.utils.errors import GroundupError, GroundupWarning

log = logging.getLogger(__name__)


class CorruptImageError(GroundupError, ValueError):
    """An image file that cannot be decoded (or is too large to); the message names the file and what to do."""


DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # Pillow's warning limit: 89,478,485 pixels (about 9459 x 9459)
# The largest side an image is squashed to: 2048 x 2048 x 3 bytes is 12 MiB per image, already 12 GiB of decode
# cache per 1,000 images. (Without a limit, --size 100000 asked for a 16.4 TiB cache and ended in a MemoryError.)
MAX_SIZE = 2048


def check_size(where: str, name: str, size: int) -> int:
    """`size` as an image side: a positive integer up to `MAX_SIZE`, else an error naming `name` and the cost."""
    check_int(where, name, size)
    if size > MAX_SIZE:
        raise ValueError(f"{where + ': ' if where else ''}{name} {size} is too large: the largest is {MAX_SIZE} (every "
                         f"image becomes {size} x {size} pixels, {format_size(size * size * 3)} each, in the decode "
                         f"cache and in every batch); images are squashed to {name.lstrip('-')} x "
                         f"{name.lstrip('-')}: 64 to 512 is usual")
    return size


_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_FIX = "remove it or convert it (to PNG or JPEG)"


def to_rgb(im: Image.Image) -> Image.Image:
    """`im` as an 8-bit RGB image; 16-bit, 32-bit and float modes are scaled, not clipped (see the module notes)."""
    if im.mode in _16BIT or im.mode == "I":
        v = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8)).convert("RGB")  # uint8: mode L
    if im.mode == "F":
        v = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0)
        return Image.fromarray(np.rint(np.clip(v, 0.0, 1.0) * 255).astype(np.uint8)).convert("RGB")  # uint8: mode L
    return im.convert("RGB")


def _open(path: str | os.PathLike, max_pixels: int | None) -> Image.Image:
    """`Image.open` (the header only) with groundup's pixel limit in place of Pillow's warning."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below says more
            im = Image.open(path)
    except Image.DecompressionBombError as e:  # above twice Pillow's limit: it refuses to open it at all
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow opens"
        raise CorruptImageError(_too_large(path, pixels, max_pixels)) from e
    if max_pixels is not None and im.width * im.height > max_pixels:
        im.close()
        raise CorruptImageError(_too_large(path, f"{im.width} x {im.height} = {im.width * im.height:,} pixels",
                                           max_pixels))
    return im


def _too_large(path, pixels: str, max_pixels: int | None) -> str:
    limit = f"{max_pixels:,}" if max_pixels is not None else f"Pillow's {2 * Image.MAX_IMAGE_PIXELS:,}"
    return (f"image file {path} is too large to decode: {pixels}, more than the limit of {limit} (max_pixels); "
            f"it may be a decompression bomb: remove it, or shrink it if it is genuine (in Python, max_pixels= "
            f"raises the limit)")


def check_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Read only the header of an image file: its (width, height), or `CorruptImageError` naming the file.

    Cheap (no pixels are decoded); catches files that are not images, unknown formats and images
    above `max_pixels`, not damage further in (a truncated JPEG is found when it is decoded).
    """
    try:
        with _open(path, max_pixels) as im:
            return im.size
    except (FileNotFoundError, CorruptImageError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(f"cannot decode image file {path}: {_reason(e)}; {_FIX}") from e


def _reason(e: Exception) -> str:
    if isinstance(e, UnidentifiedImageError):  # Pillow's message repeats the path
        return "not an image format Pillow knows (not an image at all, or damaged at the start)"
    return str(e) or type(e).__name__


_ORIENTATION = 0x0112  # the EXIF tag: 1 upright, 2-8 mirrored and/or rotated


def upright(im: Image.Image) -> Image.Image:
    """`im` turned as its EXIF orientation tag says (`ImageOps.exif_transpose`); `im` itself when it has none."""
    if im.getexif().get(_ORIENTATION, 1) in (0, 1):
        return im
    return ImageOps.exif_transpose(im)


def open_image(path: str | os.PathLike, size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               exif_orientation: bool = True) -> np.ndarray:
    """Decode an image file to a (size, size, 3) uint8 RGB array, upright, squashed to a square.

    Every Pillow mode is converted to 8-bit RGB; 16-bit, 32-bit and float images are scaled (see
    the module notes). JPEGs are decoded in draft mode: libjpeg scales by 1/2, 1/4 or 1/8 while
    decoding (never below `size`), which saves most of the decoding work
    (`benchmarks/bench_data.py` measures it).

    Args:
        path: the image file.
        size: the side of the square result.
        max_pixels: refuse (`CorruptImageError`) an image with more pixels than this before
            decoding it (a decompression bomb); None: only Pillow's own limit, twice as high.
        exif_orientation: turn the image as its EXIF orientation tag says (see the module notes);
            False: the pixels as stored.

    Raises:
        FileNotFoundError: no such file.
        CorruptImageError: not an image, damaged, or too large; the message names the file and what to do.
    """
    try:
        with _open(path, max_pixels) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size, size))
            if exif_orientation:
                im = upright(im)
            im = to_rgb(im)
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.array(im, dtype=np.uint8)  # a writable copy
    except (FileNotFoundError, CorruptImageError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise CorruptImageError(f"cannot decode image file {path}: {_reason(e)}; {_FIX}") from e


def image_pixels(image, size: int, exif_orientation: bool = True) -> np.ndarray:
    """One image as a (size, size, 3) uint8 RGB array, squashed to a square as in training.

    Args:
        image: an image file's path (decoded by `open_image`, exactly as the `Dataset` does), a PIL
            image, or a uint8 array or tensor of shape (H, W, 3), (H, W, 4), (H, W, 1) or (H, W).
        size: the side of the square.
        exif_orientation: turn a file or PIL image as its EXIF orientation tag says (as in training).
    """
    check_int("image_pixels", "size", size)
    if isinstance(image, (str, os.PathLike)):
        return open_image(image, size, exif_orientation=exif_orientation)
    if isinstance(image, Image.Image) and exif_orientation:
        image = upright(image)
    if not isinstance(image, Image.Image):
        arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError(f"an image array must be uint8 (0-255), got dtype {arr.dtype}; for floats in "
                            f"[0, 1] pass (x * 255).round().astype(np.uint8)")
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"an image array must be (H, W, C), got shape {arr.shape} (channels first?); "
                             f"move the channels last: x.transpose(1, 2, 0)")
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4))):
            raise ValueError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape "
                             f"{arr.shape}")
        image = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.array(image, dtype=np.uint8)


class Dataset:
    """Images and their label indices: `ds[i]` is `(uint8 tensor (size, size, 3), int label)`.

    Args:
        files: image paths.
        vocab: `{label: index}`; built from the files' labels with `val2idx` when None.
        size: images are squashed to `size`×`size` pixels.
        label_func: the label of a file (default: its parent folder's name).
        targets: the targets themselves, one per file, in place of `label_func`'s labels: class
            indices (N,) or, for multi-label data, multi-hot rows (N, n_classes) of 0.0/1.0.
        cache: keep decoded images in a `DecodeCache` (uint8 memory map under `GROUNDUP_HOME`) so
            epochs after the first skip decoding; pass False to decode every time. Where the cache
            cannot be made (a full or read-only disk) a `GroundupWarning` says so and `cache` is None.
        skip_corrupt: on an undecodable file, warn and return None (which `collate` drops)
            instead of raising `CorruptImageError`.
        max_pixels: refuse images with more pixels than this, before decoding them (a
            decompression bomb); see `open_image`.
        exif_orientation: turn each image as its EXIF orientation tag says (see the module notes).

    Example:
        >>> ds = Dataset(get_image_files("imagenette2-160/train"), size=64)
        >>> x, y = ds[0]          # x: (64, 64, 3) uint8, y: int
    """

    def __init__(self, files: Sequence[str | os.PathLike], vocab: dict[str, int] | None = None,
                 size: int = 64, label_func: Callable[[Path], str] = parent_label,
                 cache: bool = True, skip_corrupt: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 exif_orientation: bool = True, targets: np.ndarray | None = None):
        check_size("Dataset", "size", size)
        if max_pixels is not None:
            check_int("Dataset", "max_pixels", max_pixels)
        self.files = [Path(f) for f in files]
        if targets is not None:
            if vocab is None or len(targets) != len(self.files):
                raise ValueError(f"Dataset: targets need a vocab and one row per file; got {len(targets)} targets "
                                 f"for {len(self.files)} files, vocab {'missing' if vocab is None else 'given'}")
            self.vocab, self.labels = vocab, np.asarray(targets)
        else:
            self.vocab = vocab if vocab is not None else val2idx(label_func(f) for f in self.files)
            self.labels = np.asarray(label_files(self.files, self.vocab, label_func), dtype=np.int64)
        self.size, self.skip_corrupt, self.max_pixels = size, skip_corrupt, max_pixels
        self.exif_orientation = exif_orientation
        self._skipped: set[int] = set()  # found bad by check_headers (with skip_corrupt), when there is no cache
        self.cache = None
        if cache and self.files:
            try:
                self.cache = DecodeCache(self.files, size, exif_orientation=exif_orientation)
            except DecodeCacheError as e:  # a full or read-only disk costs speed, never the run
                warnings.warn(f"{e}; going on without the decode cache (every epoch decodes the images again): "
                              f"{e.advice} to make the epochs after the first faster", GroundupWarning, stacklevel=2)
        self._all_cached = False
        self._warned_damage = False
        self._verified, self._verified_pid = None, None  # which cached images this process has checked

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"Dataset({len(self)} images, {len(self.vocab)} labels, size={self.size})"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        x = self._image(int(i))
        if x is None:
            return None
        y = self.labels[i]
        return torch.from_numpy(x), (int(y) if y.ndim == 0 else torch.from_numpy(y.copy()))  # multi-hot: (C,)

    def check_headers(self) -> None:
        """Read the header of every image not yet in the decode cache: cheap, and before any training.

        An unreadable file (not an image, an unknown format, more than `max_pixels` pixels) raises
        `CorruptImageError` naming it and what to do, or, with `skip_corrupt`, is skipped with a
        warning. Damage further into a file is found when it is decoded.
        """
        c = self.cache
        flags = c.flags(np.arange(len(self))) if c is not None else np.zeros(len(self), np.uint8)
        for i in np.flatnonzero(flags != FILLED):
            if flags[i] == BAD and self.skip_corrupt:
                continue
            try:
                check_image(self.files[i], self.max_pixels)
            except CorruptImageError as e:
                self._bad(int(i), e)

    def _bad(self, i: int, e: CorruptImageError) -> None:
        """Skip image `i` with a warning (`skip_corrupt`), or raise `e` with the way to skip it."""
        if not self.skip_corrupt:
            raise CorruptImageError(f"{e}; or skip unreadable images with --skip-corrupt (skip_corrupt=True in "
                                    f"Python)") from e
        log.warning("skipping %s", e)
        if self.cache is not None:
            self.cache.mark_bad(i)
        else:
            self._skipped.add(i)

    def _damaged(self, idxs: np.ndarray, pixels: np.ndarray) -> bool:
        """Check the cached `pixels` of `idxs` against their checksums, each image once per process (later
        epochs cost nothing); forget damaged ones, so they are decoded again (one warning). True if any were."""
        if self._verified is None or self._verified_pid != os.getpid():
            self._verified, self._verified_pid = np.zeros(len(self), dtype=bool), os.getpid()
        fresh = np.flatnonzero(~self._verified[idxs])
        if not len(fresh):
            return False
        if len(fresh) == len(idxs):  # the usual case: no copy
            damaged = self.cache.damaged(idxs, pixels)
        else:
            damaged = fresh[self.cache.damaged(idxs[fresh], pixels[fresh])]
        self._verified[idxs[fresh]] = True
        for k in damaged:
            self._verified[idxs[k]] = False
            self._forget_damaged(int(idxs[k]))
        return bool(len(damaged))

    def _forget_damaged(self, i: int) -> None:
        """Image `i`'s pixels in the decode cache do not match their checksum: decode it again (one warning)."""
        self.cache.forget(i)
        if self._warned_damage:  # one warning is enough to say it; each damaged image is decoded again alike
            return
        self._warned_damage = True
        warnings.warn(f"the decode cache {self.cache.path} is damaged (the pixels of {self.files[i]} do not match "
                      f"their checksum, and maybe of others); groundup made it, so it decodes such images again", GroundupWarning,
                      stacklevel=3)

    def skipped(self) -> set[int]:
        """The indices of the images found unreadable and skipped so far (`skip_corrupt`).

        Read from the decode cache when there is one (so it includes what worker processes found);
        without a cache, only what this process found.
        """
        found = set(self._skipped)
        if self.cache is not None:
            found |= {int(i) for i in np.flatnonzero(self.cache.flags(np.arange(len(self))) == BAD)}
        return found

    def is_cached(self) -> bool:
        """True once every image is in the decode cache (then batches are a cheap gather)."""
        if not self._all_cached and self.cache is not None:
            self._all_cached = self.cache.n_filled() == len(self)
        return self._all_cached

    def get_batch(self, idxs: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The collated batch of `idxs` at once: ((n, size, size, 3) uint8, (n,) int64 or (n, C) multi-hot).

        With a warm cache this is one vectorised gather from the memory map, not n decodes.
        Corrupt files are dropped (with `skip_corrupt`) so the batch can be smaller than `idxs`.
        """
        idxs = np.asarray(idxs, dtype=np.int64)
        if self.cache is None:
            xs = [self._image(i) for i in idxs]
        else:
            flags = self.cache.flags(idxs)
            if (flags == FILLED).all():
                xb = self.cache.read(idxs)
                if not self._damaged(idxs, xb):
                    return torch.from_numpy(xb), torch.from_numpy(self.labels[idxs])
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
                x = c.read([i])  # a copy: a caller writing into it must not touch the cache
                if not self._damaged(np.array([i]), x):
                    return x[0]
            if flag == BAD and self.skip_corrupt:
                return None
        elif i in self._skipped and self.skip_corrupt:
            return None
        try:
            x = open_image(self.files[i], self.size, self.max_pixels, self.exif_orientation)
        except CorruptImageError as e:
            self._bad(i, e)
            return None
        if c is not None:
            c.write(i, x)
            if self._verified is not None and self._verified_pid == os.getpid():
                self._verified[i] = True  # this process wrote it
        return x
