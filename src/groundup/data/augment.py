"""Batch augmentation on uint8 image batches: a random crop and a horizontal flip per image.

Two kinds of crop: `crop="resize"` (a random resized crop: part of the image, stretched to the
training size) and `crop="pad"` (a random translation: the image at the training size, padded by
`pad` pixels on each side by reflection, and a window of the training size cut at a random
place, so objects keep the scale they have at validation).

Augmentation runs on a whole (N, H, W, C) uint8 batch at once, on the training device, after the
decode cache and before normalization (`SetupLearnerCB` calls it), so cached epochs stay fast and
the workers only copy bytes. Each image gets its own crop box and flip, drawn from a generator
seeded by (seed, epoch, batch index, rank): the same seed gives the same augmented batches, so an
exact resume stays exact.

For resized crops, the decode cache stores training images a little larger than the training size
(`BatchAugment.stored_size`, 1.25× by default: 80 px for 64 px training), so that a crop has
pixels to choose from instead of blowing up a 64-pixel image. Augmentation is for training batches
only: every other batch (validation, prediction, export) gets the deterministic view, the whole
image resized to the model's size (`whole_view`), from `Preprocessing`.

How a crop is taken: the crop box (in input pixels) and the flip become one affine map from output
to input coordinates, and `torch.nn.functional.grid_sample` samples it bilinearly
(`align_corners=False`, pixel centers at half-integers), as a resize of the crop would.

Example:
    >>> aug = BatchAugment(size=64, scale=(0.35, 1.0), seed=0)
    >>> xb = torch.randint(0, 256, (8, 80, 80, 3), dtype=torch.uint8)
    >>> aug(xb, epoch=0, batch=0).shape                     # random crops and flips
    torch.Size([8, 64, 64, 3])
    >>> whole_view(xb, 64).shape                             # the whole image, resized
    torch.Size([8, 64, 64, 3])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from groundup.utils.checks import check_int

__all__ = ["CROPS", "BatchAugment", "crop_boxes", "pad_crops", "resample_boxes", "whole_view"]

CROPS = ("resize", "pad")  # the kinds of crop BatchAugment takes


def _check_pair(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"BatchAugment: {name} must be a pair (min, max), got {value!r}") from None
    if not (low < a <= b <= high):
        raise ValueError(f"BatchAugment: {name} must satisfy {low} < min <= max <= {high}, got ({a}, {b})")
    return a, b


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator | None = None) -> Tensor:
    """`n` random crop boxes `(left, top, width, height)` in pixels, one per image, as float64 (n, 4).

    Each box covers a fraction of the image's area drawn uniformly from `scale`, with an aspect
    ratio (width / height) drawn log-uniformly from `ratio`, placed uniformly at random. A side
    longer than the image's is cut to the image's (the box then covers less area), so no box leaves
    the image.
    """
    area = torch.empty(n, dtype=torch.float64).uniform_(*scale, generator=generator) * (height * width)
    log_r = torch.empty(n, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                           generator=generator)
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(1, width)
    h = torch.sqrt(area / aspect).clamp(1, height)
    left = torch.rand(n, dtype=torch.float64, generator=generator) * (width - w)
    top = torch.rand(n, dtype=torch.float64, generator=generator) * (height - h)
    return torch.stack([left, top, w, h], dim=1)  # (n, 4)


def resample_boxes(xb: Tensor, boxes: Tensor, flips: Tensor, size: int) -> Tensor:
    """Crop each image of a uint8 (N, H, W, C) batch to its box, flip it where `flips`, resize to `size`.

    Args:
        xb: uint8 (N, H, W, C) images.
        boxes: (N, 4) boxes `(left, top, width, height)` in pixels (see `crop_boxes`).
        flips: (N,) bool, True mirrors that image left-right.
        size: the side of the square result.

    Returns uint8 (N, size, size, C), rounded. Sampling is bilinear with pixel centers at
    half-integers: the output pixel j of a box (left, w) reads input x = left + (j + 0.5) * w / size - 0.5.
    """
    n, height, width, _ = xb.shape
    boxes = boxes.to(torch.float64)
    left, top, w, h = boxes.unbind(1)
    # In grid_sample's normalized coordinates (-1 and 1 are the outer edges of the input), a box is a
    # scale (half its size) and a center; a negative x scale reads the box right to left: the flip.
    sx = (w / width) * torch.where(flips.to(torch.bool).cpu(), -1.0, 1.0).to(torch.float64)
    sy = h / height
    cx = (2 * left + w) / width - 1
    cy = (2 * top + h) / height - 1
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)  # (N, 2, 3)
    x = xb.permute(0, 3, 1, 2).float()  # (N, C, H, W), channels-last in memory
    grid = F.affine_grid(theta.to(device=xb.device, dtype=torch.float32), [n, xb.shape[3], size, size],
                         align_corners=False)  # (N, size, size, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (N, size, size, C)


def pad_crops(xb: Tensor, offsets: Tensor, flips: Tensor, pad: int) -> Tensor:
    """Translate each image of a uint8 (N, H, W, C) batch: pad it by `pad` pixels on every side by reflection,
    cut the H×W window at `offsets`, and mirror it left-right where `flips`.

    Args:
        xb: uint8 (N, H, W, C) images.
        offsets: (N, 2) integer (x, y) corners of each window in the padded image, each in [0, 2 * pad]
            (`pad` for both: the image itself).
        flips: (N,) bool, True mirrors that image left-right.
        pad: pixels of reflection padding on each side; less than H and W.

    Returns uint8 (N, H, W, C): every pixel is one of the image's own, moved, none interpolated.
    """
    n, height, width, _ = xb.shape
    x = F.pad(xb.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="reflect")  # (N, C, H + 2p, W + 2p)
    offsets = offsets.to(device=xb.device, dtype=torch.long)
    rows = offsets[:, 1:2] + torch.arange(height, device=xb.device)  # (N, H)
    cols = offsets[:, 0:1] + torch.arange(width, device=xb.device)   # (N, W)
    cols = torch.where(flips.to(device=xb.device, dtype=torch.bool)[:, None], cols.flip(1), cols)
    index = torch.arange(n, device=xb.device)[:, None, None]
    out = x[index, :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C): the indexed dims come first
    return out.to(torch.uint8).contiguous()


def whole_view(xb: Tensor, size: int) -> Tensor:
    """The deterministic view: each whole image of a uint8 (N, H, W, C) batch resized to `size`×`size`."""
    n, height, width, _ = xb.shape
    if height == width == size:
        return xb
    whole = torch.tensor([[0.0, 0.0, width, height]], dtype=torch.float64).expand(n, 4)
    return resample_boxes(xb, whole, torch.zeros(n, dtype=torch.bool), size)


class BatchAugment:
    """Random crops and horizontal flips of a uint8 (N, H, W, C) batch, per image, on its device.

    Args:
        size: the side of the augmented images (the training size). It can be changed between
            epochs (progressive resizing): the stored images stay as they are.
        crop: "resize" (random resized crops, `scale` and `ratio`) or "pad" (random translations by up to
            `pad` pixels, the image first resized to `size` if it is not; the images are then stored
            at `size`).
        scale: range of the fraction of the image's area a crop covers (1.0: the whole image); "resize" only.
        ratio: range of the crop's aspect ratio, width / height (drawn log-uniformly); "resize" only.
        pad: "pad" only: the largest shift in pixels; None: `size // 16` (4 at 64 px), at least 1.
        flip: mirror each image left-right with probability 1/2.
        seed: seeds every batch's draw together with (epoch, batch index, rank); None draws a seed.
        stored_scale: "resize" only: the decode cache stores training images at
            `stored_size = round(size * stored_scale)` pixels, so that crops have pixels to choose from.

    Calling it, `aug(xb, epoch=e, batch=i)`, gives a training batch's random crops and flips, seeded
    by (seed, e, i, rank). Batches seen outside training are not augmented: `Preprocessing` gives
    them the whole image at the model's size.
    """

    def __init__(self, size: int = 64, scale: Sequence[float] = (0.35, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = True, seed: int | None = None,
                 stored_scale: float = 1.25, crop: str = "resize", pad: int | None = None) -> None:
        check_int("BatchAugment", "size", size)
        self.size = size
        if crop not in CROPS:
            raise ValueError(f"BatchAugment: crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.crop = crop
        if pad is not None:
            check_int("BatchAugment", "pad", pad)
        self.pad = pad
        self.scale = _check_pair("scale", scale, 0.0, 1.0)
        self.ratio = _check_pair("ratio", ratio, 0.0, math.inf)
        self.flip = bool(flip)
        if not (isinstance(stored_scale, (int, float)) and stored_scale >= 1):
            raise ValueError(f"BatchAugment: stored_scale must be a number >= 1, got {stored_scale!r}")
        self.stored_scale = float(stored_scale)
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.rank = 0  # set by distributed training, so ranks draw different crops

    @property
    def stored_size(self) -> int:
        """The side of the training images the decode cache stores (`size * stored_scale`, rounded; `size`
        for "pad" crops, which keep the scale)."""
        if self.crop == "pad":
            return self.size
        return max(self.size, round(self.size * self.stored_scale))

    @property
    def shift(self) -> int:
        """The largest shift of "pad" crops, in pixels: `pad`, or `size // 16` (at least 1), less than the size."""
        return min(self.size - 1, self.pad if self.pad is not None else max(1, self.size // 16))

    def generator(self, epoch: int, batch: int) -> torch.Generator:
        """The generator for one batch: a function of (seed, epoch, batch, rank) only."""
        key = hash((self.seed, int(epoch), int(batch), self.rank)) & (2**63 - 1)  # ints hash to themselves
        return torch.Generator().manual_seed(key)

    def params(self, n: int, height: int, width: int, epoch: int, batch: int) -> tuple[Tensor, Tensor]:
        """The crops and flips (n,) of one batch: crop boxes (n, 4) (`crop_boxes`), or for "pad" the windows'
        integer corners (n, 2) in the padded image (`pad_crops`)."""
        g = self.generator(epoch, batch)
        if self.crop == "pad":
            boxes = torch.randint(0, 2 * self.shift + 1, (n, 2), generator=g)
        else:
            boxes = crop_boxes(n, height, width, self.scale, self.ratio, generator=g)
        flips = torch.rand(n, generator=g) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return boxes, flips

    def __call__(self, xb: Tensor, epoch: int = 0, batch: int = 0) -> Tensor:
        if not (isinstance(xb, Tensor) and xb.dtype == torch.uint8 and xb.ndim == 4):
            got = f"{xb.dtype} of shape {tuple(xb.shape)}" if isinstance(xb, Tensor) else type(xb).__name__
            raise ValueError(f"BatchAugment expects a uint8 image batch (N, H, W, C), got {got}")
        if self.crop == "pad":
            xb = whole_view(xb, self.size)  # e.g. a new size set between epochs: translations keep the scale
        n, height, width, _ = xb.shape
        boxes, flips = self.params(n, height, width, epoch, batch)
        if self.crop == "pad":
            return pad_crops(xb, boxes, flips, self.shift)
        return resample_boxes(xb, boxes, flips, self.size)

    def __repr__(self) -> str:
        if self.crop == "pad":
            return f"BatchAugment(size={self.size}, crop='pad', pad={self.shift}, flip={self.flip}, seed={self.seed})"
        return (f"BatchAugment(size={self.size}, scale={self.scale}, ratio=({self.ratio[0]:.3g}, "
                f"{self.ratio[1]:.3g}), flip={self.flip}, seed={self.seed}, stored_size={self.stored_size})")
