"""Classification losses built step by step: logsumexp -> log_softmax -> nll -> cross_entropy; and for
multi-label data, log_sigmoid -> binary_cross_entropy_with_logits (at the end of the file).

Shapes throughout: logits (N, C) of floats, targets (N,) of integer class indices in [0, C).

About the target checks: shape and dtype checks are free (no data is read). Checking that every
target is in [0, C) means reading the values, which on a GPU is a device->host sync per batch, so
it runs only for CPU tensors. On CUDA an out-of-range target still fails, inside the gather kernel
("device-side assert triggered"); rerun on CPU or call `check_targets(..., values=True)` to get the
readable message.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["binary_cross_entropy_with_logits", "check_targets", "cross_entropy", "log_sigmoid", "log_softmax",
           "logsumexp", "nll"]


def logsumexp(x: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) along `dim`, computed stably: subtract the max before exponentiating.

    log Σ exp(x_i) = m + log Σ exp(x_i - m) for any m; with m = max(x) the largest term is exp(0) = 1,
    so nothing overflows (logits of ±1e4 are exact) and at least one term does not underflow.

    Example:
        >>> logsumexp(torch.tensor([[1e4, 1e4]]))
        tensor([10000.6934])
    """
    m = x.detach().amax(dim, keepdim=True)  # the shift is a constant for autograd: the gradient stays softmax
    m = m.masked_fill(m.isinf(), 0.0)  # an all -inf (or +inf) row would give inf - inf = nan otherwise
    out = (x - m).exp().sum(dim, keepdim=True).log() + m
    return out if keepdim else out.squeeze(dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along `dim`: x - logsumexp(x), which stays finite where softmax underflows to 0."""
    return x - logsumexp(x, dim, keepdim=True)


def check_targets(fn: str, logits: Tensor, targets: Tensor, values: bool | None = None) -> Tensor:
    """Check that `targets` are (N,) integer class indices for (N, C) `logits`; return them as int64.

    Args:
        fn: the caller's name, used in the error message.
        logits: (N, C) floats.
        targets: (N,) integers in [0, C).
        values: check that every target lies in [0, C). None (default) means "only for CPU tensors",
            because reading the values of a GPU tensor costs a host sync.

    Raises:
        TypeError / ValueError that name the shape, dtype or value received and what was expected.
    """
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        name, value = ("logits", logits) if not isinstance(logits, Tensor) else ("targets", targets)
        raise TypeError(f"{fn} expects tensors, got {name} of type {type(value).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"{fn} expects logits of shape (N, C), got shape {tuple(logits.shape)}; "
                         f"the model's last layer should output one row of class scores per item")
    if not logits.is_floating_point():
        raise TypeError(f"{fn} expects floating point logits, got dtype {logits.dtype}")
    n, n_classes = logits.shape
    if targets.ndim != 1 or targets.shape[0] != n:
        shape = tuple(targets.shape)
        hint = ""
        if targets.ndim == 2 and shape == (n, n_classes):
            hint = "; these look one-hot, pass class indices: targets.argmax(1)"
        elif targets.ndim == 2 and shape == (n, 1):
            hint = "; drop the extra dimension: targets.squeeze(1)"
        raise ValueError(f"{fn} expects targets of shape (N,) = ({n},) for logits of shape {(n, n_classes)}, "
                         f"got shape {shape}{hint}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"{fn} expects integer class indices as targets (dtype torch.int64), got dtype "
                        f"{targets.dtype}; if they hold whole numbers, convert with targets.long()")
    if targets.dtype != torch.int64:
        targets = targets.long()
    if values is None:
        values = targets.device.type == "cpu"
    if values and targets.numel():
        lo, hi = (int(v) for v in torch.aminmax(targets))
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{fn}: targets must be class indices in [0, {n_classes}) for logits with "
                             f"{n_classes} classes, got a target of {bad} (targets range from {lo} to {hi}); "
                             f"check the number of outputs of the model's last layer against the labels")
    return targets


def _nll(log_probs: Tensor, targets: Tensor) -> Tensor:
    return -log_probs.gather(1, targets.unsqueeze(1)).mean()  # pick log p(target) per row, average


def nll(log_probs: Tensor, targets: Tensor) -> Tensor:
    """Negative log likelihood: the mean over the batch of -log_probs[i, targets[i]].

    Args:
        log_probs: (N, C) log probabilities, e.g. from `log_softmax`.
        targets: (N,) integer class indices.
    """
    return _nll(log_probs, check_targets("nll", log_probs, targets))


REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0,
                  reduction: str = "mean") -> Tensor:
    """Cross-entropy of `logits` (N, C) against class indices `targets` (N,); matches F.cross_entropy.

    Args:
        logits: (N, C) raw class scores.
        targets: (N,) integer class indices in [0, C).
        label_smoothing: ε in [0, 1]. The target distribution becomes (1 - ε) on the true class plus
            ε/C on every class (Szegedy et al. 2016), so loss = (1 - ε) * nll + ε * mean_c(-log p_c).
        reduction: "mean" (default) averages the items' losses, "sum" adds them, "none" returns
            each item's loss, shape (N,); as torch's.

    Example:
        >>> cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
        tensor(0.1269)
        >>> cross_entropy(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]), reduction="none")
        tensor([0.1269, 2.1269])
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, "
                         f"got {reduction!r}")
    targets = check_targets("cross_entropy", logits, targets)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the loss in float32, as F.cross_entropy under autocast: exp/log need the range
    log_probs = log_softmax(logits, dim=1)  # (N, C)
    if reduction == "mean":  # the walkthrough's arithmetic, in its order
        loss = _nll(log_probs, targets)
        if label_smoothing:
            loss = (1.0 - label_smoothing) * loss - label_smoothing * log_probs.mean(dim=1).mean()
        return loss
    losses = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,): -log p(target) per item
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * log_probs.mean(dim=1)
    return losses.sum() if reduction == "sum" else losses


# -- multi-label: a sigmoid per tag ---------------------------------------------------------------


def log_sigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)), stable for any x: min(x, 0) - log(1 + exp(-|x|)).

    log σ(x) = -log(1 + e^(-x)). For x ≪ 0, e^(-x) overflows; rewriting with |x| keeps the
    exponent ≤ 0, so nothing overflows and log1p keeps the precision where e^(-|x|) is tiny.
    """
    return x.clamp(max=0) - torch.log1p(torch.exp(-x.abs()))


def binary_cross_entropy_with_logits(logits: Tensor, targets: Tensor, pos_weight: Tensor | None = None,
                                     reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Binary cross-entropy of one sigmoid per output: the multi-label loss; matches the torch function.

    loss = -[pos_weight · y · log σ(x) + (1 - y) · log σ(-x)], element by element, with `log_sigmoid`
    (never log of a sigmoid that has rounded to 0 or 1).

    Args:
        logits: (N, C) raw scores, one per tag (any shape works, as long as `targets` has it too).
        targets: the same shape, 0.0/1.0 (multi-hot) or probabilities in [0, 1].
        pos_weight: (C,) weight of the positive term per tag (> 1 raises recall, e.g. n_negative / n_positive).
        reduction: "mean" (over every element), "sum" or "none" (the (N, C) losses).
        label_smoothing: ε: targets become y(1 - ε) + ε/2 (0 and 1 move towards 1/2); not in torch's function.

    Example:
        >>> binary_cross_entropy_with_logits(torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(0.2201)
    """
    if not isinstance(logits, Tensor) or not isinstance(targets, Tensor):
        raise TypeError(f"binary_cross_entropy_with_logits expects tensors, got {type(logits).__name__} and "
                        f"{type(targets).__name__}")
    if logits.shape != targets.shape:
        hint = (f"; class indices? make them multi-hot: torch.nn.functional.one_hot(targets, {logits.shape[1]})"
                f".float()" if targets.ndim == 1 and logits.ndim == 2 else "")
        raise ValueError(f"binary_cross_entropy_with_logits expects targets of the logits' shape "
                         f"{tuple(logits.shape)}, got {tuple(targets.shape)}{hint}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be 'mean', 'sum' or 'none', got "
                         f"{reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"binary_cross_entropy_with_logits: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing!r}")
    logits, y = logits.float(), targets.float()  # in float32, as under autocast torch does
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / 2
    positive = y * log_sigmoid(logits)  # (N, C)
    if pos_weight is not None:
        positive = positive * pos_weight.to(logits.device, torch.float32)
    loss = -(positive + (1.0 - y) * log_sigmoid(-logits))  # (N, C)
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
