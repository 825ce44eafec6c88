"""`ProgressiveResize`: train the first epochs on smaller images, the last ones at full size.

A convolutional network with an adaptive pool before its head takes any image size, and most of
what it learns in the first epochs (edges, textures, colours) does not need every pixel, and a
smaller image costs less (a `resnet_fast` training step on a CPU: 0.32-0.38x the time at 32 px,
0.60-0.65x at 48 px, of the time at 64 px). So the early epochs run on the
training batches shrunk (area-averaged, as a resize with antialiasing), and the size grows in
steps of `step` pixels (16) to the full size, which the last `1 - until` of the epochs keep. The
validation batches are never touched: every epoch is validated at the full size.

The size is a plain function of the epoch (`size_at`), so a resumed run trains each epoch at the
size the first one did; the callback keeps no state.

Example:
    >>> cb = ProgressiveResize(start=32, until=0.5)
    >>> [cb.size_at(e, n_epochs=8, full=64) for e in range(8)]
    [32, 32, 48, 48, 64, 64, 64, 64]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from groundup.callbacks.core import Callback
from groundup.utils.checks import check_int, check_number

__all__ = ["ProgressiveResize"]


class ProgressiveResize(Callback):
    """Train epoch e on images of side `size_at(e)`: from `start` up to the full size by `until` of the epochs.

    The full size is the training batches' own (e.g. 64 for `--size 64`). The side grows linearly
    with the epoch, rounded down to a multiple of `step` (never below `start`), and reaches the full size at epoch
    `until * n_epochs`. Only 4-D float training batches (N, C, H, W) are resized, after
    `SetupLearnerCB` has augmented and normalized them; their memory format is kept.

    Args:
        start: the side of the first epochs' images, in pixels (at least 8).
        until: the fraction of the epochs after which every epoch trains at the full size, in (0, 1].
        step: the sides used are multiples of this (16 keeps convolution shapes regular: at 64 px, 56-px batches
            trained barely faster than 64-px ones on a CPU).
    """

    order = -5  # after SetupLearnerCB (-10) has made the model's input, before anything that reads it

    def __init__(self, start: int, until: float = 0.5, step: int = 16):
        self.start = check_int("ProgressiveResize", "start", start, low=8)
        self.until = check_number("ProgressiveResize", "until", until, 0.0, low_inclusive=False)
        if self.until > 1:
            raise ValueError(f"ProgressiveResize: until is a fraction of the epochs in (0, 1], got {until}")
        self.step = check_int("ProgressiveResize", "step", step)

    def size_at(self, epoch: int, n_epochs: int, full: int) -> int:
        """The side of the training images in `epoch` (0-based) of `n_epochs`, for a full size `full`."""
        if self.start >= full:
            return full
        pct = epoch / (self.until * n_epochs)
        if pct >= 1:
            return full
        side = self.start + pct * (full - self.start)
        return max(self.start, int(side) // self.step * self.step)  # side < full here

    def before_batch(self) -> None:
        learn = self.learn
        xb, *rest = learn.batch
        if not learn.training or not isinstance(xb, torch.Tensor) or xb.ndim != 4 or not xb.is_floating_point():
            return
        full = xb.shape[-1]
        side = self.size_at(learn.epoch, learn.n_epochs, full)
        if side == full:
            return
        channels_last = xb.is_contiguous(memory_format=torch.channels_last) and not xb.is_contiguous()
        small = F.interpolate(xb, size=(side * xb.shape[-2] // full, side), mode="bilinear",
                              antialias=True, align_corners=False)
        if channels_last:
            small = small.contiguous(memory_format=torch.channels_last)
        learn.batch = (small, *rest)

    def __repr__(self) -> str:
        return f"ProgressiveResize(start={self.start}, until={self.until}, step={self.step})"
