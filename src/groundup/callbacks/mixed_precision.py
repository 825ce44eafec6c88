"""`MixedPrecision`: run the forward pass and the loss in 16-bit floats under `torch.autocast`.

Autocast runs matrix multiplies and convolutions in bfloat16 or float16 (faster, half the memory
traffic) and keeps precision-sensitive ops in float32; the parameters and the optimizer stay in
float32. float16 has a small range, so small gradients can underflow to 0: with float16 the loss
is multiplied by a large factor before `backward` (gradient scaling, Micikevicius et al. 2018,
"Mixed Precision Training") and the gradients divided by it again before the step. bfloat16 has
float32's range and needs no scaling.
"""

from __future__ import annotations

from typing import Any

import torch

from groundup.learner import Callback

__all__ = ["MixedPrecision"]


class _ScaledOptimizer:
    """Wraps an optimizer so that `step()` goes through a `GradScaler` (skipped if grads overflowed).

    Everything a callback or checkpoint touches is forwarded: `param_groups` and `state` are the
    inner optimizer's own objects, and `state_dict()` is the inner one's (a checkpoint holds no
    wrapper). The scaler's own state is saved by `MixedPrecision.state_dict`.
    """

    def __init__(self, opt, scaler: torch.amp.GradScaler) -> None:
        self.opt, self.scaler = opt, scaler
        self._unscaled = False  # unscale_ was called since the last scaler.update()

    @property
    def param_groups(self) -> list[dict]:
        return self.opt.param_groups

    @property
    def state(self) -> Any:
        return self.opt.state

    def unscale_(self) -> None:
        """Divide the gradients by the scale (once per step), so later code sees the true gradients."""
        if not self._unscaled:
            self.scaler.unscale_(self.opt)
            self._unscaled = True

    def step(self) -> None:
        """Step the inner optimizer unless a gradient is inf/NaN, then adapt the scale."""
        self.scaler.step(self.opt)  # unscales first if unscale_ was not called
        self.scaler.update()
        self._unscaled = False

    def skip_step(self) -> None:
        """Finish a batch whose step was cancelled: forget its unscaling (the next batch starts fresh)."""
        if self._unscaled:
            self.scaler.update()
            self._unscaled = False

    def zero_grad(self, *args, **kwargs) -> None:
        self.opt.zero_grad(*args, **kwargs)

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.opt.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"_ScaledOptimizer({self.opt!r}, scale={self.scaler.get_scale()})"


class MixedPrecision(Callback):
    """Run the model and the loss under `torch.autocast`; scale the loss for float16.

    Autocast is entered in `before_batch` (after `SetupLearnerCB` has moved the batch) and left in
    `after_loss`, so `backward`, the step and other callbacks run outside it; it is also left in
    `after_batch` and `after_fit` if a cancel or an error skipped `after_loss`.

    With float16, a `torch.amp.GradScaler` is used: `loss_grad` becomes the scaled loss in
    `after_loss`; the gradients are unscaled in `after_backward` (so a later callback, e.g. one
    that clips gradients, sees the true values); and while fitting, `learn.opt` is a thin wrapper
    whose `step()` is `scaler.step(opt); scaler.update()` (a step with inf/NaN gradients is
    skipped and the scale lowered). `learn.opt` is the plain optimizer again after `fit`.

    Events used (a pattern for your own callbacks): `before_fit` picks device and dtype,
    `before_train` wraps the optimizer, `before_batch`/`after_loss` enter and leave autocast,
    `after_backward` unscales, `after_batch`/`after_fit` clean up whatever a cancel or error left.

    Args:
        dtype: `torch.bfloat16` or `torch.float16`; default bfloat16 on CPU, float16 on CUDA.
        device_type: "cpu" or "cuda"; default: where the model's parameters are at `before_fit`.

    Example:
        >>> learn.fit(5, cbs=[MixedPrecision()])
    """

    order = -5  # after SetupLearnerCB (-10) has put the batch on the device; before the rest

    def __init__(self, dtype: torch.dtype | None = None, device_type: str | None = None) -> None:
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"MixedPrecision: dtype must be torch.bfloat16, torch.float16 or None, got {dtype!r}")
        if device_type not in (None, "cpu", "cuda"):
            raise ValueError(f"MixedPrecision: device_type must be 'cpu', 'cuda' or None, got {device_type!r}")
        self.dtype, self.device_type = dtype, device_type
        self.scaler: torch.amp.GradScaler | None = None
        self._scaler_state: dict | None = None  # loaded before the scaler exists: applied in before_fit
        self._autocast: torch.autocast | None = None
        self._device: str | None = None
        self._scaler_device: str | None = None
        self._dtype: torch.dtype | None = None

    def before_fit(self) -> None:
        device = self.device_type or _param_device(self.learn.model)
        dtype = self.dtype or (torch.float16 if device == "cuda" else torch.bfloat16)
        self._device, self._dtype = device, dtype
        if dtype == torch.float16:
            if self.scaler is None or self._scaler_device != device:
                self.scaler, self._scaler_device = torch.amp.GradScaler(device), device
            if self._scaler_state is not None:
                self.scaler.load_state_dict(self._scaler_state)
                self._scaler_state = None
        else:
            self.scaler = None

    def before_train(self) -> None:
        learn = self.learn
        if self.scaler is not None and not isinstance(learn.opt, _ScaledOptimizer):
            learn.opt = _ScaledOptimizer(learn.opt, self.scaler)

    def before_batch(self) -> None:
        self._exit()  # in case the last batch never reached after_loss
        self._autocast = torch.autocast(self._device, dtype=self._dtype)
        self._autocast.__enter__()

    def after_loss(self) -> None:
        self._exit()
        if self.scaler is not None and self.learn.training:
            self.learn.loss_grad = self.scaler.scale(self.learn.loss_grad)

    def after_backward(self) -> None:
        if isinstance(self.learn.opt, _ScaledOptimizer):
            self.learn.opt.unscale_()

    def after_batch(self) -> None:
        self._exit()
        if isinstance(self.learn.opt, _ScaledOptimizer):
            self.learn.opt.skip_step()  # a no-op unless this batch's step was cancelled

    def after_fit(self) -> None:
        self._exit()
        if isinstance(self.learn.opt, _ScaledOptimizer):
            self.learn.opt = self.learn.opt.opt

    def _exit(self) -> None:
        if self._autocast is not None:
            ctx, self._autocast = self._autocast, None
            ctx.__exit__(None, None, None)

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
