"""Running a model without training: batches in, model inputs out, per-item losses.

The pieces behind `Learner.get_preds`, `Learner.validate` and `Learner.predict`. They run no
callback: an image batch gets what `SetupLearnerCB` gives a validation batch in training: it is moved
to the model's device and goes through the learner's `Preprocessing` (the whole image at its size,
normalized, NHWC → NCHW).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from groundup.data.images import image_pixels
from groundup.data.preprocessing import Preprocessing, output_probabilities
from groundup.losses import log_sigmoid

__all__ = ["evaluating", "inference_batches", "is_image", "item_losses", "model_device", "model_input",
           "probabilities", "tta_forward"]


def is_image(x: Any) -> bool:
    """True for one image as `Learner.predict` takes it: a path, a PIL image, an (H, W[, C]) array or tensor."""
    if isinstance(x, (str, os.PathLike, Image.Image)):
        return True
    if isinstance(x, (np.ndarray, Tensor)):  # its dtype is checked when it is read (`image_pixels`)
        return x.ndim in (2, 3)
    return False


def model_device(model) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    params = model.parameters()
    first = next(iter(params), None)
    return first.device if first is not None else torch.device("cpu")


@contextlib.contextmanager
def evaluating(model) -> Iterator[Any]:
    """Eval mode and `torch.no_grad` for a `with` block; the model's own mode is put back after it."""
    was_training = model.training
    model.train(False)
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def model_input(xb: Tensor, preprocessing: Preprocessing | None, device: torch.device) -> Tensor:
    """What the model eats: a uint8 image batch (N, H, W, C) through `preprocessing`, float (N, C, H, W) on `device`.

    Other batches (features, float images) are only moved to `device`.
    """
    xb = xb.to(device)
    if xb.dtype == torch.uint8 and xb.ndim == 4:
        if preprocessing is None:
            raise ValueError("uint8 image batches need the normalization statistics of training, but the "
                             "learner has no preprocessing; pass Learner(..., preprocessing=...) or use "
                             "ImageDataLoaders.from_folder, which measures them")
        xb = preprocessing(xb)  # the whole image at its size, normalized: (N, C, H, W) float32
    return xb


def inference_batches(data: Iterable | Sequence, preprocessing: Preprocessing | None, device: torch.device,
                      bs: int = 64) -> Iterator[tuple[Tensor, Tensor | None]]:
    """`(model input, targets on device or None)` for each batch of a loader or of a list of images.

    Args:
        data: a loader yielding `(xb, yb)` batches (an `xb` alone also works: no targets), or a list
            of images (see `is_image`), squashed to `preprocessing.size` and batched by `bs`.
    """
    if isinstance(data, (list, tuple)) and data and is_image(data[0]):
        if preprocessing is None or preprocessing.size is None:
            raise ValueError("predicting images needs the image size and statistics of training "
                             "(learn.preprocessing); pass Learner(..., preprocessing=...) or use "
                             "ImageDataLoaders.from_folder")
        for i in range(0, len(data), bs):
            pixels = np.stack([image_pixels(im, preprocessing.size, preprocessing.exif_orientation) for im in data[i:i + bs]])  # (n, s, s, 3)
            yield model_input(torch.from_numpy(pixels), preprocessing, device), None
        return
    for batch in data:
        if isinstance(batch, Tensor):
            xb, yb = batch, None
        else:
            xb, yb = batch[0], (batch[1] if len(batch) > 1 else None)
        yield model_input(xb, preprocessing, device), (yb.to(device) if isinstance(yb, Tensor) else yb)


def probabilities(preds: Tensor, preprocessing: Preprocessing | None) -> Tensor:
    """The model's outputs as probabilities, as its task reads them (`Preprocessing.probabilities`: a
    softmax, or a sigmoid per tag for multi-label); a softmax when there is no preprocessing."""
    return output_probabilities(preds, preprocessing is not None and preprocessing.multi_label)


def tta_forward(model: Callable[[Tensor], Tensor], x: Tensor, multi_label: bool = False) -> Tensor:
    """Test-time augmentation with flips: the mean of the probabilities on `x` and on `x` mirrored, as logits.

    `x` is a model input (N, C, H, W). Single-label: the result (N, n_classes) is in log-probabilities
    (log of the mean softmax), which any classification loss and `argmax` read as logits
    (log_softmax leaves them unchanged). Multi-label: the logit of each tag's mean sigmoid,
    log p - log(1 - p), so that a sigmoid of the result gives the mean probability back.
    """
    if x.ndim != 4:
        raise ValueError(f"test-time augmentation flips images, (N, C, H, W), but the model's input has shape "
                         f"{tuple(x.shape)}; leave tta off for other inputs")
    if multi_label:
        a, b = model(x).float(), model(x.flip(3)).float()  # (N, n_tags) each
        log_p = torch.logaddexp(log_sigmoid(a), log_sigmoid(b))          # log(2 p_mean)
        log_not_p = torch.logaddexp(log_sigmoid(-a), log_sigmoid(-b))    # log(2 (1 - p_mean))
        return log_p - log_not_p                                          # the log 2s cancel
    a = torch.log_softmax(model(x).float(), dim=1)           # (N, n_classes)
    b = torch.log_softmax(model(x.flip(3)).float(), dim=1)   # the mirror image: W is the last axis
    return torch.logaddexp(a, b) - math.log(2)               # log((p_a + p_b) / 2), stable where p underflows


def item_losses(loss_func: Callable, preds: Tensor, targets: Tensor) -> Tensor:
    """The loss of each item (N,), in one call: `loss_func(preds, targets, reduction="none")`.

    Raises:
        TypeError: `loss_func` takes no `reduction` argument, or does not return one loss per item.
    """
    name = getattr(loss_func, "__name__", None) or type(loss_func).__name__
    try:
        losses = loss_func(preds, targets, reduction="none")
    except TypeError as e:
        if "reduction" not in str(e):
            raise
        raise TypeError(f"per-item losses need a loss function that takes reduction='none' (as torch's and "
                        f"groundup's cross_entropy do); {name} does not: {e}") from None
    if isinstance(losses, Tensor) and losses.ndim == 2 and losses.shape == targets.shape:
        losses = losses.mean(dim=1)  # multi-label: an item's loss is the mean over its tags
    if not (isinstance(losses, Tensor) and losses.shape == (len(targets),)):
        got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
        raise TypeError(f"{name}(..., reduction='none') returned {got}, expected one loss per item: ({len(targets)},)")
    return losses.float()
