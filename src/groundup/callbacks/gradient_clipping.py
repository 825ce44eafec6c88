"""`GradientClipping`: scale the gradients down when their norm exceeds `max_norm`, before each step."""

from __future__ import annotations

import torch

from groundup.callbacks.core import Callback
from groundup.utils.checks import check_number

__all__ = ["GradientClipping"]


class GradientClipping(Callback):
    """Clip the gradient norm of all the optimizer's parameters to `max_norm` before each step.

    The norm is the 2-norm of all gradients together, as if they were one vector (what
    `torch.nn.utils.clip_grad_norm_` computes); when it exceeds `max_norm`, every gradient is
    multiplied by `max_norm / norm`, so the direction is kept and only the length shrinks (Pascanu
    et al. 2013, "On the difficulty of training recurrent neural networks").

    It runs in `after_backward`, where the gradients are the true ones also under mixed precision
    (`learn.backward()` has unscaled them) and where, with gradient accumulation, they are the sum
    of the whole group (`after_backward` fires only on the batch that steps). No host sync: the
    norm stays on the device; `last_norm` holds the norm before clipping of the last step.

    Args:
        max_norm: the largest gradient norm allowed; > 0.

    Example:
        >>> learn.fit(5, cbs=[GradientClipping(1.0)])
    """

    order = 10  # after DistributedTraining (-7) has averaged the gradients over the ranks

    def __init__(self, max_norm: float) -> None:
        self.max_norm = check_number("GradientClipping", "max_norm", max_norm, low_inclusive=False)
        self.last_norm: torch.Tensor | None = None
        self._params: list[torch.Tensor] = []

    def before_train(self) -> None:
        self._params = [p for group in self.learn.opt.param_groups for p in group["params"]]

    def after_backward(self) -> None:
        self.last_norm = torch.nn.utils.clip_grad_norm_(self._params, self.max_norm)

    def __repr__(self) -> str:
        return f"GradientClipping(max_norm={self.max_norm})"
