"""Metrics: numbers to watch during training that are not (necessarily) the loss.

Metrics return 0-d tensors on the logits' device (no `.item()`), so a learner can keep running
sums on the device and convert once per epoch instead of syncing every batch.
"""

from __future__ import annotations

from torch import Tensor

from groundup.losses import check_targets

__all__ = ["accuracy"]


def accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """Share of rows whose highest logit is the target class, as a 0-d float tensor.

    Args:
        logits: (N, C) class scores (logits or probabilities: the argmax is the same).
        targets: (N,) integer class indices in [0, C) (range checked on CPU only; see `groundup.losses`).

    Example:
        >>> accuracy(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        tensor(0.5000)
    """
    targets = check_targets("accuracy", logits, targets)
    return (logits.argmax(dim=1) == targets).float().mean()  # 0-d
