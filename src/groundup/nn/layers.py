"""Layers: they own their Parameters, initialization, buffers and input checks; torch does the math.

The input checks compare shapes and dtypes only (no values, so no host-device sync) and run before
the torch call, so a wrong layout gets an error that says what happened and how to fix it instead of
a message from deep inside `F.conv2d`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from groundup.nn.module import Module, Parameter
from groundup.utils.checks import check_int

__all__ = [
    "AdaptivePool",
    "AvgPool",
    "BatchNorm",
    "ConvLayer",
    "Flatten",
    "Linear",
    "MaxPool",
    "ReLU",
    "Sequential",
    "kaiming_normal_",
    "torch_default_",
    "xavier_normal_",
]


# -- initialization -----------------------------------------------------------------------------

def _fans(w: Tensor) -> tuple[int, int]:
    receptive = w[0][0].numel() if w.ndim > 2 else 1  # kernel area for convs, 1 for linear weights
    return w.shape[1] * receptive, w.shape[0] * receptive


def kaiming_normal_(w: Tensor) -> Tensor:
    """Fill `w` in place from N(0, 2 / fan_in): keeps activation variance steady through ReLU layers.

    From He et al. 2015, "Delving Deep into Rectifiers": ReLU zeroes half the signal, so the
    variance needs a factor 2 that plain 1/fan_in scaling lacks. `fan_in` = inputs per output unit.
    """
    fan_in, _ = _fans(w)
    with torch.no_grad():
        return w.normal_(0.0, math.sqrt(2.0 / fan_in))


def xavier_normal_(w: Tensor) -> Tensor:
    """Fill `w` in place from N(0, 2 / (fan_in + fan_out)): for layers without a ReLU after them.

    From Glorot & Bengio 2010: a compromise that keeps variance steady both forward and backward.
    """
    fan_in, fan_out = _fans(w)
    with torch.no_grad():
        return w.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))


def torch_default_(w: Tensor, bias: Tensor | None = None) -> Tensor:
    """Fill `w` (and `bias`) in place from U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Conv2d's and Linear's
    own init (`kaiming_uniform_(w, a=sqrt(5))`, and the same bound for the bias).

    Its standard deviation, 1/sqrt(3 fan_in), is sqrt(6) times smaller than kaiming-normal's. Before a
    BatchNorm the scale of a conv's weights does not change its output, but it sets how far each
    optimizer step moves them relative to their size: smaller weights learn faster (at the fast
    recipe's settings, 0.825 against 0.813 after 15 epochs on Imagenette; README, "The fast recipe").
    """
    fan_in, _ = _fans(w)
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        w.uniform_(-bound, bound)  # the weight first, then the bias: torch's order, so a seed draws the same
        if bias is not None:
            bias.uniform_(-bound, bound)
    return w


def _check_size(layer: str, name: str, value: object) -> None:
    check_int(layer, name, value)


# -- input checks (called only when the cheap shape test fails) ---------------------------------

def _image_batch_error(layer: str, x: Tensor, channels: int, allow_2d: bool = False) -> ValueError:
    """Explain why `x` is not a float (N, channels, H, W) batch, with a fix."""
    shape = tuple(x.shape)
    expected = f"(N, {channels}, H, W)" + (f" or (N, {channels})" if allow_2d else "")
    if not x.is_floating_point():
        return ValueError(
            f"{layer} got a batch of dtype {x.dtype} (shape {shape}); it needs floating point input. "
            f"Convert images with x.float() / 255 and normalize them (SetupLearnerCB does this)")
    if x.ndim == 4 and shape[-1] == channels and shape[1] != channels:
        return ValueError(
            f"{layer} got input of shape {shape}, which looks channels-last (N, H, W, C); it expects "
            f"channels-first {expected}. Convert with x.permute(0, 3, 1, 2) (groundup's layout step "
            f"in SetupLearnerCB does this for image batches)")
    if x.ndim == 4 or (allow_2d and x.ndim == 2):
        return ValueError(
            f"{layer} expects {channels} channels in dim 1, {expected}, got shape {shape} with "
            f"{shape[1]} there; check the layer's input channels against the previous layer's output")
    hint = ""
    if x.ndim == 3 and shape[0] == channels:
        hint = "; for a single image, add the batch dimension with x.unsqueeze(0)"
    elif x.ndim == 3 and shape[-1] == channels:
        hint = "; for a single channels-last image (H, W, C), use x.permute(2, 0, 1).unsqueeze(0)"
    dims = "a 4-D batch" + (" (or 2-D features)" if allow_2d else "")
    return ValueError(f"{layer} expects {dims} {expected}, got shape {shape}{hint}")


# -- layers --------------------------------------------------------------------------------------

class ConvLayer(Module):
    """A square convolution ("same" padding) followed by ReLU: the book's building block for image models.

    Args:
        ni: input channels.
        nf: output channels (number of filters).
        stride: 1 (default, as in the walkthrough) keeps height and width; 2 halves them.
        bias: learn a per-channel bias (turn it off when BatchNorm follows).
        act: apply ReLU. Also picks the init: kaiming-normal for ReLU, xavier-normal otherwise.
        kernel_size: odd kernel size, 3 by default (1 gives the 1×1 convs of ResNet shortcuts).

    Shapes: (N, ni, H, W) -> (N, nf, ceil(H / stride), ceil(W / stride)).

    Example:
        >>> ConvLayer(3, 16)(torch.randn(8, 3, 64, 64)).shape
        torch.Size([8, 16, 64, 64])
        >>> ConvLayer(3, 16, stride=2)(torch.randn(8, 3, 64, 64)).shape
        torch.Size([8, 16, 32, 32])
    """

    def __init__(self, ni: int, nf: int, stride: int = 1, bias: bool = True, act: bool = True,
                 kernel_size: int = 3) -> None:
        super().__init__()
        name = f"ConvLayer({ni}, {nf})"
        for arg, value in (("ni", ni), ("nf", nf), ("stride", stride), ("kernel_size", kernel_size)):
            _check_size(name, arg, value)
        if kernel_size % 2 == 0:
            raise ValueError(f"{name}: kernel_size must be odd so padding keeps the size, got {kernel_size}")
        self.in_channels, self.out_channels = ni, nf
        self.stride, self.act, self.kernel_size = stride, act, kernel_size
        self.padding = kernel_size // 2
        self._name = name
        self.weight = Parameter(torch.empty(nf, ni, kernel_size, kernel_size))
        (kaiming_normal_ if act else xavier_normal_)(self.weight)
        self.bias = Parameter(torch.zeros(nf)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or not x.is_floating_point():
            raise _image_batch_error(self._name, x, self.in_channels)
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)  # (N, nf, H/stride, W/stride)
        return F.relu(x) if self.act else x

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}, stride={self.stride}"]
        if self.bias is None:
            parts.append("bias=False")
        if not self.act:
            parts.append("act=False")
        if self.kernel_size != 3:
            parts.append(f"kernel_size={self.kernel_size}")
        return ", ".join(parts)


class Linear(Module):
    """A fully connected layer: `x @ weight.T + bias`.

    Args:
        ni: input features (`in_features`).
        nf: output features (`out_features`).
        bias: learn an additive bias.

    Init as the walkthrough: xavier-normal weight (std sqrt(2 / (ni + nf))), zero bias. (torch.nn.Linear
    draws both from U(-1/sqrt(ni), 1/sqrt(ni)); for simple_cnn's last layer xavier trains better: 0.468
    vs 0.447 valid accuracy after the walkthrough's 8-epoch OneCycle run on Imagenette, same seed.)
    Shapes: (N, *, ni) -> (N, *, nf).
    """

    def __init__(self, ni: int, nf: int, bias: bool = True) -> None:
        super().__init__()
        name = f"Linear({ni}, {nf})"
        _check_size(name, "ni", ni)
        _check_size(name, "nf", nf)
        self.in_features, self.out_features, self._name = ni, nf, name
        self.weight = Parameter(xavier_normal_(torch.empty(nf, ni)))
        self.bias = Parameter(torch.zeros(nf)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 0 or x.shape[-1] != self.in_features or not x.is_floating_point():
            raise self._input_error(x)
        return F.linear(x, self.weight, self.bias)  # (N, *, nf); one fused matmul + bias (addmm)

    def _input_error(self, x: Tensor) -> ValueError:
        shape, ni = tuple(x.shape), self.in_features
        if not x.is_floating_point():
            return ValueError(f"{self._name} got input of dtype {x.dtype}; it needs floating point "
                              f"input: convert with x.float()")
        if x.ndim > 2 and math.prod(shape[1:]) == ni:
            return ValueError(f"{self._name} got input of shape {shape}; flatten it to ({shape[0]}, {ni}) "
                              f"first (x.flatten(1), or put Flatten() before this layer)")
        got = shape[-1] if shape else "a 0-d tensor"
        return ValueError(f"{self._name} expects input of shape (N, {ni}), got shape {shape} with {got} "
                          f"features; check in_features against the previous layer's output")

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")


class BatchNorm(Module):
    """Batch normalization over channels for (N, C, H, W) feature maps (or (N, C) features).

    Training normalizes with the batch's per-channel mean and variance and updates the running
    estimates; evaluation uses the running estimates (so predictions do not depend on the batch).
    Then each channel is scaled by `weight` and shifted by `bias` (Ioffe & Szegedy 2015).

    Args:
        nf: number of channels C (`num_features`).
        eps: added to the variance before the square root, for stability.
        momentum: running = (1 - momentum) * running + momentum * batch statistic.
        track_batches: also count the training batches in a `num_batches_tracked` buffer, as
            torch.nn.BatchNorm2d does (so torchvision's state dicts, which hold it, load strictly).

    Buffers: `running_mean` (zeros) and `running_var` (ones), both shape (C,); with `track_batches`,
    `num_batches_tracked` (a 0-d int64).
    """

    def __init__(self, nf: int, eps: float = 1e-5, momentum: float = 0.1, track_batches: bool = False) -> None:
        super().__init__()
        name = f"BatchNorm({nf})"
        _check_size(name, "nf", nf)
        if not (eps > 0 and math.isfinite(eps)):
            raise ValueError(f"{name}: eps must be a finite number > 0, got {eps!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum, self._name = nf, eps, momentum, name
        self.weight = Parameter(torch.ones(nf))
        self.bias = Parameter(torch.zeros(nf))
        self.register_buffer("running_mean", torch.zeros(nf))
        self.register_buffer("running_var", torch.ones(nf))
        self.track_batches = track_batches
        if track_batches:
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if (x.ndim != 4 and x.ndim != 2) or x.shape[1] != self.num_features or not x.is_floating_point():
            raise _image_batch_error(self._name, x, self.num_features, allow_2d=True)
        if self.training and self.track_batches:
            self.num_batches_tracked.add_(1)
        # F.batch_norm updates running_mean/var in place when training (running_var with the unbiased variance).
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)  # same shape as x

    def extra_repr(self) -> str:
        extra = "" if self.eps == 1e-5 else f", eps={self.eps}"
        return f"{self.num_features}{extra}" + ("" if self.momentum == 0.1 else f", momentum={self.momentum}")


class Sequential(Module):
    """Run layers one after another; children are named by position, so keys read `0.weight`, `1.bias`, ...

    Indexing gives a layer (`model[0]`) or, with a slice, a `Sequential` of the same layer objects.

    Example:
        >>> model = Sequential(Linear(784, 50), ReLU(), Linear(50, 10))
        >>> len(model), list(model.state_dict())[:2]
        (3, ['0.weight', '0.bias'])
    """

    def __init__(self, *layers: Module | torch.nn.Module) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            raise TypeError(f"Sequential takes the layers as separate arguments; got one "
                            f"{type(layers[0]).__name__}: use Sequential(*layers)")
        self.layers = tuple(layers)  # a tuple: __setattr__ does not register it, so ...
        self.register_modules(*layers)  # ... register the children explicitly, as in the walkthrough

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, index: int | slice) -> Module | torch.nn.Module | Sequential:
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)


class AdaptivePool(Module):
    """Average each channel over height and width: (N, C, H, W) -> (N, C), for any H and W."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"AdaptivePool expects a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
        return x.mean((2, 3))  # (N, C)


class MaxPool(Module):
    """The largest value in each `kernel_size`×`kernel_size` window: (N, C, H, W) -> (N, C, H', W').

    H' = floor((H + 2 * padding - kernel_size) / stride) + 1 (as `torch.nn.MaxPool2d`); ResNet's stem
    uses kernel_size=3, stride=2, padding=1, which halves H and W.
    """

    def __init__(self, kernel_size: int = 2, stride: int | None = None, padding: int = 0) -> None:
        super().__init__()
        _check_size("MaxPool", "kernel_size", kernel_size)
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"MaxPool expects a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)  # (N, C, H', W')

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool(Module):
    """The mean of each `kernel_size`×`kernel_size` window, stride `kernel_size`: (N, C, H, W) -> (N, C, H/k, W/k).

    As `torch.nn.AvgPool2d(kernel_size)`, with `ceil_mode=True` so that an odd side keeps its last
    row and column (H' = ceil(H / k), as a stride-k 3×3 conv with padding 1 gives): the shortcut of a
    ResBlock with `shortcut="avg"` averages each window before its 1×1 conv instead of skipping
    three pixels in four.
    """

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        _check_size("AvgPool", "kernel_size", kernel_size)
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"AvgPool expects a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
        return F.avg_pool2d(x, self.kernel_size, ceil_mode=True, count_include_pad=False)  # (N, C, H', W')

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class Flatten(Module):
    """Flatten everything after the batch dimension: (N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2:
            raise ValueError(f"Flatten expects a batch (N, ...) with at least 2 dims, got shape {tuple(x.shape)}")
        return x.flatten(1)  # (N, prod(rest))


class ReLU(Module):
    """max(x, 0), elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)  # same shape as x
