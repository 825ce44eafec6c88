"""`SetupLearnerCB`: device placement, training augmentation and the late uint8 → model input step (`Preprocessing`)."""

from __future__ import annotations

import torch

from groundup.callbacks.core import Callback
from groundup.data.preprocessing import Preprocessing
from groundup.data.transforms import Normalize, batch_stats
from groundup.utils.devices import resolve_device
from groundup.utils.process_group import broadcast_

__all__ = ["SetupLearnerCB", "to_device"]


def to_device(batch, device: torch.device):
    """Move a batch (a tensor, or a tuple/list/dict of them) to `device` without blocking the host."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class SetupLearnerCB(Callback):
    """Put the model on the device; turn each batch into what the model eats, on that device.

    For a uint8 image batch (N, H, W, C), as groundup's DataLoader yields: move it to the device;
    while training, augment it there when the loaders have an `augment` (`BatchAugment`: random
    crops and flips at the training size); then apply the learner's `Preprocessing` (the whole
    image at the model's size, unless augmented; normalize, which divides by 255; `to_nchw`),
    giving float (N, C, H, W). Validation batches thus see exactly what `get_preds`, `predict` and
    export see. Other batches (floats, 2-D features, ...) are only moved.

    The statistics come from `learn.preprocessing` (which `ImageDataLoaders.from_folder` makes);
    without one, from the first training batch, as the walkthrough does (under torchrun: rank 0's
    first batch, for every rank), and they are then recorded as `learn.preprocessing` so that
    checkpoints and prediction use the same ones.

    Args:
        device: where to train; default CUDA when available (under torchrun: this process's GPU),
            else CPU.
        normalize: a `Normalize` whose statistics take precedence over `learn.preprocessing`'s (the
            image size is still `learn.preprocessing`'s, when it has one).
    """

    order = -10  # before every callback that looks at the batch

    def __init__(self, device: str | torch.device | None = None, normalize: Normalize | None = None):
        self.device = resolve_device(device, "SetupLearnerCB: device")
        self.normalize = normalize
        self._augment = None
        self._preprocessing: Preprocessing | None = None

    def before_fit(self) -> None:
        self.learn.model.to(self.device)
        self._augment = getattr(self.learn.dls, "augment", None)  # looked up once per fit, not per batch
        self._preprocessing = None  # from `normalize`: made at the first image batch
        for dl in (self.learn.dls.train, self.learn.dls.valid):
            if callable(getattr(dl, "pin_for", None)):  # groundup's DataLoader: pinned host memory for CUDA,
                dl.pin_for(self.device)                 # so that to_device's non_blocking copies overlap

    def before_batch(self) -> None:
        learn = self.learn
        xb, *rest = to_device(tuple(learn.batch), self.device)
        if xb.dtype == torch.uint8 and xb.ndim == 4:
            augmented = learn.training and self._augment is not None
            if augmented:  # seeded by (epoch, batch): the same batches again after a resume
                xb = self._augment(xb, epoch=learn.epoch, batch=learn.iter)
            xb = self.preprocessing(xb)(xb, resize=not augmented)  # (N, C, H, W) float32
        learn.batch = (xb, *rest)

    def preprocessing(self, xb: torch.Tensor) -> Preprocessing:
        """The `Preprocessing` image batches get: the learner's (or `normalize`'s statistics at its size).

        Without either, the statistics of `xb` (the first batch, as the walkthrough measures them)
        become `learn.preprocessing`.
        """
        learn = self.learn
        if self.normalize is not None:
            if self._preprocessing is None:  # made once per fit
                size = learn.preprocessing.size if learn.preprocessing is not None else None
                self._preprocessing = Preprocessing(self.normalize.mean, self.normalize.std, size=size)
            return self._preprocessing
        if learn.preprocessing is None:  # no statistics given: the walkthrough's first-batch statistics
            mean, std = batch_stats(xb)
            # Under torchrun each rank sees its own shard of the first batch: all take rank 0's statistics,
            # or the ranks would normalize differently (a no-op in a single process)
            broadcast_([mean, std])
            learn.preprocessing = Preprocessing(mean, std, size=xb.shape[1] if xb.shape[1] == xb.shape[2] else None)
        return learn.preprocessing

    def __repr__(self) -> str:
        return f"SetupLearnerCB(device={self.device}, normalize={self.normalize})"


# `default_device` before 0.2: now `groundup.utils.devices.resolve_device()`.
