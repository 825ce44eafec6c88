"""`SetupLearnerCB`: device placement and the late uint8 → normalized float NCHW step."""

from __future__ import annotations

import torch

from groundup.data.transforms import Normalize, to_nchw
from groundup.distributed import local_device
from groundup.learner import Callback


def default_device() -> torch.device:
    """CUDA when available (under torchrun: this process's GPU, `cuda:LOCAL_RANK`), else CPU."""
    return local_device()


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

    For a uint8 image batch (N, H, W, C), as groundup's DataLoader yields: move it to the device,
    then `Normalize` (which divides by 255) and `to_nchw` there, giving float (N, C, H, W). Other
    batches (floats, 2-D features, ...) are only moved.

    Args:
        device: where to train; default CUDA when available, else CPU.
        normalize: a `Normalize`; default from `learn.dls.stats`, else from the first training
            batch's statistics (as the walkthrough does).
    """

    order = -10  # before every callback that looks at the batch

    def __init__(self, device: str | torch.device | None = None, normalize: Normalize | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.normalize = normalize

    def before_fit(self) -> None:
        self.learn.model.to(self.device)
        if self.normalize is None:
            stats = getattr(self.learn.dls, "stats", None)
            if stats is not None:
                self.normalize = Normalize(*stats)

    def before_batch(self) -> None:
        xb, *rest = to_device(tuple(self.learn.batch), self.device)
        if xb.dtype == torch.uint8 and xb.ndim == 4:
            if self.normalize is None:  # no stats given: the walkthrough's first-batch statistics
                self.normalize = Normalize.from_batch(xb)
            xb = to_nchw(self.normalize(xb))  # (N, C, H, W) float32
        self.learn.batch = (xb, *rest)

    def __repr__(self) -> str:
        return f"SetupLearnerCB(device={self.device}, normalize={self.normalize})"
