"""Metrics: numbers to watch during training that are not (necessarily) the loss.

Metrics return 0-d tensors on the logits' device (no `.item()`), so a learner can keep running
sums on the device and convert once per epoch instead of syncing every batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundup.losses import check_targets

__all__ = ["accuracy", "accuracy_multi", "fbeta_multi", "task_metric"]


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


# -- multi-label: every tag a yes/no decision ----------------------------------------------------------


def _multi(fn: str, preds: Tensor, targets: Tensor, threshold: float, sigmoid: bool) -> tuple[Tensor, Tensor]:
    """The (N, C) bool decisions and targets of a multi-label batch, checked."""
    if preds.shape != targets.shape or preds.ndim != 2:
        raise ValueError(f"{fn} expects predictions and multi-hot targets of one shape (N, C), got "
                         f"{tuple(preds.shape)} and {tuple(targets.shape)}")
    probs = torch.sigmoid(preds.float()) if sigmoid else preds
    return probs > threshold, targets > 0.5


def accuracy_multi(preds: Tensor, targets: Tensor, threshold: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Share of (item, tag) decisions that are right: tag predicted (sigmoid above `threshold`) iff it is a target.

    Args:
        preds: (N, C) logits (or probabilities, with `sigmoid=False`).
        targets: (N, C) multi-hot 0.0/1.0.

    Example:
        >>> accuracy_multi(torch.tensor([[2.0, -1.0], [2.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor(0.7500)
    """
    decided, truth = _multi("accuracy_multi", preds, targets, threshold, sigmoid)
    return (decided == truth).float().mean()  # 0-d


def fbeta_multi(preds: Tensor, targets: Tensor, beta: float = 1.0, threshold: float = 0.5, average: str = "micro",
                sigmoid: bool = True) -> Tensor:
    """F-beta of multi-label decisions: (1 + β²)·TP / ((1 + β²)·TP + β²·FN + FP).

    β > 1 weighs recall more, β < 1 precision; β = 1 is F1, the harmonic mean of the two.

    Args:
        preds: (N, C) logits (or probabilities, with `sigmoid=False`); a tag is predicted above `threshold`.
        targets: (N, C) multi-hot 0.0/1.0.
        average: "micro" counts TP, FP and FN over every (item, tag) pair, then takes one F; "macro"
            takes F per tag, then the plain mean over tags. A tag with nothing to count (never a
            target, never predicted) scores 0, as scikit-learn's `zero_division=0`.

    Example:
        >>> fbeta_multi(torch.tensor([[2.0, -1.0], [2.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor(0.8000)
    """
    if average not in ("micro", "macro"):
        raise ValueError(f"fbeta_multi: average must be 'micro' or 'macro', got {average!r}")
    decided, truth = _multi("fbeta_multi", preds, targets, threshold, sigmoid)
    def count(mask: Tensor) -> Tensor:  # micro: over everything (0-d); macro: per tag (C,)
        return mask.float().sum() if average == "micro" else mask.float().sum(0)

    tp, fp, fn = count(decided & truth), count(decided & ~truth), count(~decided & truth)
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    f = torch.where(denom > 0, (1 + b2) * tp / denom.clamp(min=1e-12), torch.zeros_like(denom))
    return f.mean()  # 0-d: micro's one F, or the mean over tags


def task_metric(multi_label: bool, threshold: float = 0.5):
    """The metric a run watches for its task: `accuracy`, or `accuracy_multi` at `threshold` for multi-label."""
    if not multi_label:
        return accuracy
    return lambda preds, targets: accuracy_multi(preds, targets, threshold)
