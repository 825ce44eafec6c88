"""`MixedPrecision`: run the forward pass and the loss in 16-bit floats under `torch.autocast`.

Autocast runs matrix multiplies and convolutions in bfloat16 or float16 (faster, half the memory
traffic) and keeps precision-sensitive ops in float32; the parameters and the optimizer stay in
float32. float16 has a small range, so small gradients can underflow to 0: with float16 the loss
is multiplied by a large factor before `backward` (gradient scaling, Micikevicius et al. 2018,
"Mixed Precision Training") and the gradients divided by it again before the step. bfloat16 has
float32's range and needs no scaling.
"""

from __future__ import annotations

import functools

import torch

from groundup.callbacks.core import Callback

__all__ = ["MixedPrecision"]


class MixedPrecision(Callback):
    """Run the model and the loss under `torch.autocast`; scale the loss for float16.

    It uses two extension points the Learner offers (see `Learner`): in `before_fit` it sets
    `learn.autocast` (the forward pass and the loss run inside it; backward, the step and
    callbacks outside the batch do not) and, for float16, `learn.grad_scaler` to a
    `torch.amp.GradScaler`: `learn.backward()` then scales the loss and unscales the gradients
    (so a callback in `after_backward`, e.g. one that clips gradients, sees the true values), and
    `learn.step()` skips a step whose gradients hold inf/NaN and lowers the scale. The Learner
    puts both back when `fit` ends. The scaler's state is saved in checkpoints (`state_dict`).

    Args:
        dtype: `torch.bfloat16` or `torch.float16`; default bfloat16 on CPU, float16 on CUDA.
        device_type: "cpu" or "cuda"; default: where the model's parameters are at `before_fit`.

    Example:
        >>> learn.fit(5, cbs=[MixedPrecision()])
    """

    order = -5  # after SetupLearnerCB (-10) has put the model on its device

    def __init__(self, dtype: torch.dtype | None = None, device_type: str | None = None) -> None:
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"MixedPrecision: dtype must be torch.bfloat16, torch.float16 or None, got {dtype!r}")
        if device_type not in (None, "cpu", "cuda"):
            raise ValueError(f"MixedPrecision: device_type must be 'cpu', 'cuda' or None, got {device_type!r}")
        self.dtype, self.device_type = dtype, device_type
        self.scaler: torch.amp.GradScaler | None = None
        self._scaler_state: dict | None = None  # loaded before the scaler exists: applied in before_fit
        self._scaler_device: str | None = None

    def before_fit(self) -> None:
        learn = self.learn
        device = self.device_type or _param_device(learn.unwrapped_model)
        dtype = self.dtype or (torch.float16 if device == "cuda" else torch.bfloat16)
        learn.autocast = functools.partial(torch.autocast, device, dtype=dtype)
        if dtype == torch.float16:
            if self.scaler is None or self._scaler_device != device:
                self.scaler, self._scaler_device = torch.amp.GradScaler(device), device
            if self._scaler_state is not None:
                self.scaler.load_state_dict(self._scaler_state)
                self._scaler_state = None
            learn.grad_scaler = self.scaler
        else:
            self.scaler = None

    def state_dict(self) -> dict:
        """The gradient scaler's state (scale, growth tracker); empty without a scaler."""
        if self.scaler is not None:
            return {"scaler": self.scaler.state_dict()}
        return {"scaler": self._scaler_state} if self._scaler_state is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scaler"):
            if self.scaler is not None:
                self.scaler.load_state_dict(state["scaler"])
            else:
                self._scaler_state = dict(state["scaler"])

    def __repr__(self) -> str:
        return f"MixedPrecision(dtype={self.dtype}, device_type={self.device_type})"


def _param_device(model) -> str:
    p = next(iter(model.parameters()), None)
    return p.device.type if p is not None else "cpu"
