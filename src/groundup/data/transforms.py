"""Batch-level transforms: statistics, `Normalize`, and the NHWC→NCHW layout step (walkthrough step 4).

Batches travel from the workers as uint8 NHWC (a quarter of float32's bytes) and are turned
into normalized float NCHW late, on the device, by these functions (the Learner's
`SetupLearnerCB` calls them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _check_nhwc(xb: Tensor, who: str) -> None:
    if not isinstance(xb, Tensor) or xb.ndim != 4:
        shape = tuple(xb.shape) if isinstance(xb, Tensor) else type(xb).__name__
        raise ValueError(f"{who} expects an image batch of shape (N, H, W, C), got {shape}")
    if xb.shape[-1] not in (1, 3, 4):
        hint = " (it looks channels-first already: NCHW)" if xb.shape[1] in (1, 3, 4) else ""
        raise ValueError(f"{who} expects channels last, (N, H, W, C) with C in 1/3/4, "
                         f"got shape {tuple(xb.shape)}{hint}")


def batch_stats(xb: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of an (N, H, W, C) batch, in [0, 1] units (uint8 is divided by 255).

    This is the walkthrough's `xb.mean((0,1,2)), xb.std((0,1,2))`.
    """
    _check_nhwc(xb, "batch_stats")
    x = xb.double() / 255 if xb.dtype == torch.uint8 else xb.double()
    return x.mean((0, 1, 2)).float(), x.std((0, 1, 2)).float()


class Normalize:
    """Map an (N, H, W, C) batch to float `(x/255 - mean) / std` per channel (uint8 input) or `(x - mean) / std`.

    Args:
        mean, std: per-channel statistics in [0, 1] units, e.g. from `batch_stats`. The walkthrough's
            single argument, a pair `stats = [mean, std]`, works too: `Normalize(stats)`.

    Example:
        >>> norm = Normalize.from_batch(xb)              # xb: (128, 64, 64, 3) uint8
        >>> x = to_nchw(norm(xb.to(device)))             # (128, 3, 64, 64) float32
        >>> xf = xb.float() / 255                        # the walkthrough's way, same result
        >>> norm = Normalize([xf.mean((0, 1, 2)), xf.std((0, 1, 2))])
    """

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor | None = None):
        if std is None:
            if not (isinstance(mean, (list, tuple)) and len(mean) == 2):
                got = f"a {type(mean).__name__} of {len(mean)}" if isinstance(mean, (list, tuple)) else repr(mean)
                raise TypeError(f"Normalize got one argument, {got:.80}; pass the statistics as a pair "
                                f"[mean, std] (the walkthrough's `stats`) or as two: Normalize(mean, std)")
            mean, std = mean
        self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: mean has {self.mean.numel()} channels, std has {self.std.numel()}")
        if not bool((self.std > 0).all()):
            raise ValueError(f"Normalize: every std must be > 0, got {self.std.tolist()}")
        self._in_255_units = bool((self.mean > 1).any())  # a plain bool: export traces no check on data
        self._cache: dict = {}

    @classmethod
    def from_batch(cls, xb: Tensor) -> Normalize:
        """A Normalize with the statistics of `xb` (see `batch_stats`)."""
        return cls(*batch_stats(xb))

    def _scale_bias(self, device: torch.device, uint8: bool) -> tuple[Tensor, Tensor]:
        key = (device, uint8)
        if key not in self._cache:  # built once per device: no host-to-device copy per batch
            if uint8 and self._in_255_units:  # statistics of xb.float() without the / 255
                raise ValueError(f"Normalize: mean {[round(v, 3) for v in self.mean.tolist()]} is in 0-255 "
                                 f"units, but a uint8 batch is divided by 255 first; compute the statistics "
                                 f"in [0, 1] units: batch_stats(xb), or on xb.float() / 255")
            scale = 1 / (self.std * (255.0 if uint8 else 1.0))
            self._cache[key] = (scale.to(device), (-self.mean / self.std).to(device))
        return self._cache[key]

    def __call__(self, xb: Tensor) -> Tensor:
        _check_nhwc(xb, "Normalize")
        if xb.shape[-1] != self.mean.numel():
            raise ValueError(f"Normalize has {self.mean.numel()} channels, got a batch of shape "
                             f"{tuple(xb.shape)} with {xb.shape[-1]}")
        scale, bias = self._scale_bias(xb.device, xb.dtype == torch.uint8)
        # x*scale + bias in one fused pass after the dtype conversion (2x faster than sub then div)
        return torch.addcmul(bias, xb.float(), scale)  # (N, H, W, C) float32

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    def __repr__(self) -> str:
        fmt = lambda t: "(" + ", ".join(f"{v:.3f}" for v in t.tolist()) + ")"
        return f"Normalize(mean={fmt(self.mean)}, std={fmt(self.std)})"


def to_nchw(xb: Tensor) -> Tensor:
    """(N, H, W, C) → (N, C, H, W): the one place groundup changes layout.

    Returns a view (no copy): in memory it stays channels-last, which PyTorch's convolutions
    read natively (`torch.channels_last`).
    """
    _check_nhwc(xb, "to_nchw")
    return xb.permute(0, 3, 1, 2)
