"""`EMA`: the bias-corrected exponential moving average behind every smoothed loss groundup shows.

avg_0 = 0, avg_k = beta * avg_{k-1} + (1 - beta) * x_k, and the smoothed value is
avg_k / (1 - beta**k): dividing by the weight the average has gathered so far (as Adam does,
Kingma & Ba 2015) keeps the first values from being pulled towards 0. The LR finder (its curve and
its explosion rule), the `Recorder` and the progress bar all use it.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["EMA"]


class EMA:
    """A bias-corrected exponential moving average of floats or tensors (a tensor stays on its device).

    Args:
        beta: the smoothing factor in [0, 1); higher is smoother, 0 returns the last value.

    Example:
        >>> ema = EMA(0.9)
        >>> ema.update(1.0), ema.update(2.0)
        (1.0, 1.526...)
    """

    def __init__(self, beta: float) -> None:
        if not 0 <= beta < 1:
            raise ValueError(f"EMA: beta must be in [0, 1), got {beta!r}")
        self.beta, self.avg, self.count = beta, 0.0, 0

    def update(self, x: Any) -> Any:
        """Add `x` and return the smoothed value."""
        self.avg = self.avg * self.beta + x * (1 - self.beta)
        self.count += 1
        return self.value

    def update_many(self, xs: Any) -> Any:
        """Add the values of the 1-d tensor `xs` in order, in one vectorised step; return the smoothed value.

        k updates at once: avg = beta^k * avg + (1 - beta) * sum_i beta^(k-1-i) * xs[i]. On a GPU
        this stays on the device (no sync), so a caller can collect per-batch losses and fold them in
        only when it needs the value.
        """
        k = len(xs)
        if k:
            powers = torch.arange(k - 1, -1, -1, device=xs.device, dtype=xs.dtype)
            self.avg = self.avg * self.beta ** k + ((1 - self.beta) * self.beta ** powers * xs).sum()
            self.count += k
        return self.value

    @property
    def value(self) -> Any:
        """The bias-corrected average (0.0 before the first update)."""
        return self.avg / (1 - self.beta ** self.count) if self.count else self.avg

    def reset(self) -> None:
        self.avg, self.count = 0.0, 0
