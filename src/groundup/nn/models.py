"""Ready-made models: the walkthrough's `simple_cnn`, a small `resnet`, and a registry for the CLI."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from groundup.nn.layers import (
    AdaptivePool,
    AvgPool,
    BatchNorm,
    ConvLayer,
    Linear,
    MaxPool,
    ReLU,
    Sequential,
    torch_default_,
)
from groundup.nn.module import Module
from groundup.utils.checks import check_int

__all__ = ["ARCHS", "IMAGENET_STATS", "ArchInfo", "BasicBlock", "ResBlock", "TorchvisionResNet", "arch_info", "build_arch", "conv_bn", "get_arch",
           "layer_groups", "register_arch", "resnet", "resnet18", "resnet34", "resnet_fast", "simple_cnn", "trainable_params"]

ARCHS: dict[str, Callable[..., Module]] = {}  # filled by @register_arch: the names `--arch` accepts
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's mean and std of ImageNet

Splitter = Callable[[Any], list[list[Tensor]]]


class ArchInfo(NamedTuple):
    """What the registry knows about an architecture besides how to build it."""

    splitter: Splitter  # model -> parameter groups, body first, the head last (fastai's `splitter`)
    stats: tuple | None  # (mean, std) its published weights expect (None: the data's own statistics)


ARCH_INFO: dict[str, ArchInfo] = {}


def trainable_params(model) -> list[list[Tensor]]:
    """The splitter of a model without a known shape: one group of all its parameters (fastai's default)."""
    return [list(model.parameters())]


def register_arch(fn: Callable[..., Module] | None = None, *, splitter: Splitter | None = None,
                  stats: tuple | None = None) -> Callable[..., Module]:
    """Register a function that builds a model as an architecture, under its own name.

    The name then works with `get_arch` and `groundup train --arch NAME`, and every model it builds
    records how (`model.arch_spec = {"name", "kwargs"}`): checkpoints store that, so prediction
    and export rebuild the model from the checkpoint alone.

    Args:
        splitter: `splitter(model) -> [[params], ..., [head params]]`: where the body ends and the
            head begins (and, for discriminative learning rates, how the body divides); the last
            group is the head. Default `trainable_params` (one group).
        stats: the (mean, std) the architecture's published weights were trained with (ImageNet's
            for resnet18/34); a run with this arch normalizes with them instead of the data's.

    Example:
        >>> @register_arch(splitter=lambda m: [list(m[0].parameters()), list(m[1].parameters())])
        ... def tiny(n_classes: int = 10): return Sequential(Linear(8, 8), Linear(8, n_classes))
    """
    if fn is None:
        return functools.partial(register_arch, splitter=splitter, stats=stats)
    sig = inspect.signature(fn)
    ARCH_INFO[fn.__name__] = ArchInfo(splitter or trainable_params, stats)

    @functools.wraps(fn)
    def build(*args: Any, **kwargs: Any) -> Module:
        model = fn(*args, **kwargs)
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        model.arch_spec = {"name": fn.__name__, "kwargs": dict(bound.arguments)}
        return model

    ARCHS[fn.__name__] = build
    return build


def _check_positive(fn: str, **sizes: int) -> None:
    for name, value in sizes.items():
        check_int(fn, name, value)


def _params(*modules) -> list[Tensor]:
    return [p for m in modules for p in m.parameters()]


def _simple_cnn_split(model: Sequential) -> list[list[Tensor]]:
    """simple_cnn: the four convs (the body), then the linear head."""
    return [_params(*model[:-2]), _params(model[-1])]


@register_arch(splitter=_simple_cnn_split)
def simple_cnn(n_in: int = 3, n_classes: int = 10) -> Sequential:
    """The walkthrough's CNN: four stride-2 ConvLayers, average pooling and a linear head (10 parameter tensors).

    Shape flow for a 64-pixel batch:
        (N, 3, 64, 64)
        -> ConvLayer(3, 16, stride=2)   -> (N, 16, 32, 32)
        -> ConvLayer(16, 32, stride=2)  -> (N, 32, 16, 16)
        -> ConvLayer(32, 64, stride=2)  -> (N, 64, 8, 8)
        -> ConvLayer(64, 128, stride=2) -> (N, 128, 4, 4)
        -> AdaptivePool -> (N, 128) -> Linear(128, 10) -> (N, 10)

    Args:
        n_in: channels of the input images.
        n_classes: number of outputs (logits).
    """
    _check_positive("simple_cnn", n_in=n_in, n_classes=n_classes)
    return Sequential(
        ConvLayer(n_in, 16, stride=2),   # (N, 16, H/2, W/2)
        ConvLayer(16, 32, stride=2),     # (N, 32, H/4, W/4)
        ConvLayer(32, 64, stride=2),     # (N, 64, H/8, W/8)
        ConvLayer(64, 128, stride=2),    # (N, 128, H/16, W/16)
        AdaptivePool(),                  # (N, 128)
        Linear(128, n_classes),          # (N, n_classes)
    )


SHORTCUTS = ("conv", "avg")  # a ResBlock's shortcut when the shape changes


def conv_bn(ni: int, nf: int, stride: int = 1, act: bool = True, kernel_size: int = 3) -> Sequential:
    """Convolution without bias -> BatchNorm -> ReLU (when `act`): (N, ni, H, W) -> (N, nf, H/stride, W/stride).

    The conv has no bias because BatchNorm's own shift (`bias`) would make it redundant.
    """
    layers = [ConvLayer(ni, nf, stride=stride, bias=False, act=False, kernel_size=kernel_size), BatchNorm(nf)]
    return Sequential(*layers, ReLU()) if act else Sequential(*layers)


class ResBlock(Module):
    """A residual block: relu(convs(x) + shortcut(x)), after He et al. 2016, "Deep Residual Learning".

    `convs` is conv_bn(ni, nf, stride) -> conv_bn(nf, nf, act=False). The shortcut is the identity
    when shapes already match, otherwise a 1×1 conv_bn that brings x to (N, nf, H/stride, W/stride):
    with `shortcut="conv"` a strided one (it reads one pixel in stride² of them), with
    `shortcut="avg"` average pooling first and then a 1×1 conv_bn of stride 1, so every pixel counts
    (the "ResNet-D" shortcut of He et al. 2019, "Bag of Tricks").
    The last BatchNorm's scale starts at zero, so every block starts as (almost) the identity and
    a deep stack trains like a shallow one at first (Goyal et al. 2017).

    Shapes: (N, ni, H, W) -> (N, nf, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, ni: int, nf: int, stride: int = 1, shortcut: str = "conv") -> None:
        super().__init__()
        _check_positive("ResBlock", ni=ni, nf=nf, stride=stride)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"ResBlock: shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        self.convs = Sequential(conv_bn(ni, nf, stride), conv_bn(nf, nf, act=False))
        with torch.no_grad():
            self.convs[1][1].weight.zero_()
        if ni == nf and stride == 1:
            self.shortcut = None
        elif shortcut == "avg" and stride > 1:
            self.shortcut = Sequential(AvgPool(stride), conv_bn(ni, nf, act=False, kernel_size=1))
        else:
            self.shortcut = conv_bn(ni, nf, stride, act=False, kernel_size=1)
        self.ni, self.nf, self.stride = ni, nf, stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)  # (N, nf, H/stride, W/stride)
        return F.relu(self.convs(x) + identity)                      # (N, nf, H/stride, W/stride)

    def extra_repr(self) -> str:
        return f"{self.ni}, {self.nf}, stride={self.stride}"


def _resnet_split(model: Sequential) -> list[list[Tensor]]:
    """resnet, resnet_fast: the stem and the first half of the blocks, the other blocks, the head (as fastai's
    three groups for a ResNet: early features change least when the data changes)."""
    body = list(model[:-2])
    n_stem = next((i for i, layer in enumerate(body) if isinstance(layer, ResBlock)), len(body))
    half = n_stem + (len(body) - n_stem) // 2  # the stem and the first half of the blocks (rounded down)
    return [_params(*body[:half]), _params(*body[half:]), _params(model[-1])]


@register_arch(splitter=_resnet_split)
def resnet(n_in: int = 3, n_classes: int = 10, width: int = 16, depth: int = 4,
           blocks_per_stage: int = 1, stem_stride: int = 1, first_stride: int = 2,
           stem: Sequence[int] | None = None, shortcut: str = "conv", init: str = "groundup") -> Sequential:
    """A small ResNet built from groundup modules: a stem, `depth` stride-2 stages, pooling and a head.

    Shape flow (w = width; each stage halves H and W and, after the first, doubles the channels):
        (N, n_in, H, W) -> stem conv_bn(n_in, w)        -> (N, w, H, W)
        -> stage 1: ResBlock(w, w, stride=2)            -> (N, w, H/2, W/2)
        -> stage 2: ResBlock(w, 2w, stride=2)           -> (N, 2w, H/4, W/4)
        -> ... stage `depth`                            -> (N, w * 2**(depth-1), H / 2**depth, W / 2**depth)
        -> AdaptivePool -> (N, w * 2**(depth-1)) -> Linear -> (N, n_classes)
    With the defaults and 64-pixel images: 16 -> 16 -> 32 -> 64 -> 128 channels, 4×4 before pooling.

    Args:
        n_in: channels of the input images.
        n_classes: number of outputs (logits).
        width: channels after the stem (and in stage 1).
        depth: number of stride-2 stages.
        blocks_per_stage: residual blocks per stage (the extra ones use stride 1).
        stem_stride: the stem's stride; 2 halves H and W before any block (a quarter of the work
            after it, the usual choice for speed on a CPU).
        first_stride: stage 1's stride (1 keeps the stem's resolution for the first stage).
        stem: the channels of each of the stem's conv_bn layers, the first one at `stem_stride`;
            None: one layer of `width` channels. E.g. (16, 32): a cheap 3->16 stride-2 conv, then a
            16->32 one at the reduced resolution. The stage-1 block then takes the last of them.
        shortcut: the ResBlocks' shortcut where the shape changes, "conv" or "avg" (see `ResBlock`).
        init: the weights' initialization: "groundup" (kaiming- or xavier-normal, as `ConvLayer` and
            `Linear` pick) or "torch" (torch.nn.Conv2d's and Linear's own, `torch_default_`, smaller);
            every block's last BatchNorm scale starts at zero either way.
    """
    _check_positive("resnet", n_in=n_in, n_classes=n_classes, width=width, depth=depth,
                    blocks_per_stage=blocks_per_stage, stem_stride=stem_stride, first_stride=first_stride)
    if init not in ("groundup", "torch"):
        raise ValueError(f"resnet: init must be 'groundup' or 'torch', got {init!r}")
    stem = (width,) if stem is None else tuple(stem)
    if not stem or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in stem):
        raise ValueError(f"resnet: stem must be a non-empty sequence of positive channel counts, got {stem!r}")
    layers: list[Module] = []
    ni = n_in
    for i, nf in enumerate(stem):
        layers.append(conv_bn(ni, nf, stride=stem_stride if i == 0 else 1))
        ni = nf
    for stage in range(depth):
        nf = width * 2 ** stage
        layers.append(ResBlock(ni, nf, stride=first_stride if stage == 0 else 2, shortcut=shortcut))
        layers += [ResBlock(nf, nf) for _ in range(blocks_per_stage - 1)]
        ni = nf
    model = Sequential(*layers, AdaptivePool(), Linear(ni, n_classes))
    if init == "torch":
        for m in model.modules():
            if isinstance(m, (ConvLayer, Linear)):
                torch_default_(m.weight, m.bias)
    return model


@register_arch(splitter=_resnet_split)
def resnet_fast(n_in: int = 3, n_classes: int = 10) -> Sequential:
    """The `fast` recipe's model for 64-pixel images on a CPU: `resnet` with a two-layer stride-2 stem, widths 32-256.

    (N, 3, 64, 64) -> stem conv_bn(3, 16, stride 2), conv_bn(16, 32) -> (N, 32, 32, 32) -> stages at
    32×32, 16×16, 8×8 and 4×4 with 32, 64, 128 and 256 channels, one block each, average-pool
    shortcuts where the shape changes (1.2 M parameters), torch's own init (`init="torch"`).

    Until groundup 0.2 the stem was one conv_bn(3, 32, stride 2), the shortcuts strided 1×1 convs and the
    init groundup's: at the fast recipe's 15 epochs on Imagenette that shape reached 1.8 points less
    (0.807 against 0.825; README, "The fast recipe"), so checkpoints of 0.2's resnet_fast do not load
    into this one.
    """
    return resnet(n_in, n_classes, width=32, depth=4, blocks_per_stage=1, stem_stride=2, first_stride=1,
                  stem=(16, 32), shortcut="avg", init="torch")


class BasicBlock(Module):
    """torchvision's ResNet basic block, with its parameter names: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut).

    `downsample` (a strided 1×1 conv and a BatchNorm, named `downsample.0` and `downsample.1`) brings
    x to the output's shape when the stride or the width changes; otherwise the shortcut is x itself.
    Shapes: (N, ni, H, W) -> (N, nf, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, ni: int, nf: int, stride: int = 1) -> None:
        super().__init__()
        _check_positive("BasicBlock", ni=ni, nf=nf, stride=stride)
        self.conv1 = ConvLayer(ni, nf, stride=stride, bias=False, act=False)
        self.bn1 = BatchNorm(nf, track_batches=True)
        self.relu = ReLU()
        self.conv2 = ConvLayer(nf, nf, bias=False, act=False)
        self.bn2 = BatchNorm(nf, track_batches=True)
        self.downsample = None
        if stride != 1 or ni != nf:
            self.downsample = Sequential(ConvLayer(ni, nf, stride=stride, bias=False, act=False, kernel_size=1),
                                         BatchNorm(nf, track_batches=True))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)   # (N, nf, H/stride, W/stride)
        out = self.relu(self.bn1(self.conv1(x)))                          # (N, nf, H/stride, W/stride)
        return self.relu(self.bn2(self.conv2(out)) + identity)            # (N, nf, H/stride, W/stride)


class TorchvisionResNet(Module):
    """A ResNet with torchvision's exact layout and parameter names, built from groundup modules.

    conv1 (7×7, stride 2) -> bn1 -> relu -> maxpool (3×3, stride 2) -> layer1..layer4 (BasicBlocks;
    layer2..4 start with stride 2 and a `downsample`) -> avgpool -> fc. So a torchvision state dict
    (`resnet18-*.pth`) loads with `model.load_state_dict(torch.load(path))`, strictly.
    Shapes for 224-pixel images: (N, 3, 224, 224) -> conv1 (N, 64, 112, 112) -> maxpool (N, 64, 56, 56)
    -> layer1..4 (N, 64, 56, 56) ... (N, 512, 7, 7) -> avgpool (N, 512) -> fc (N, n_classes).
    """

    def __init__(self, blocks: tuple[int, int, int, int], n_in: int = 3, n_classes: int = 1000) -> None:
        super().__init__()
        _check_positive("TorchvisionResNet", n_in=n_in, n_classes=n_classes)
        self.conv1 = ConvLayer(n_in, 64, stride=2, bias=False, act=False, kernel_size=7)
        self.bn1 = BatchNorm(64, track_batches=True)
        self.relu = ReLU()
        self.maxpool = MaxPool(kernel_size=3, stride=2, padding=1)
        ni = 64
        for i, n in enumerate(blocks):
            nf, stride = 64 * 2 ** i, 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", Sequential(BasicBlock(ni, nf, stride), *[BasicBlock(nf, nf) for _ in range(n - 1)]))
            ni = nf
        self.avgpool = AdaptivePool()
        self.fc = Linear(ni, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 512, H/32, W/32)
        return self.fc(self.avgpool(x))  # (N, n_classes)


def _torchvision_resnet_split(model: TorchvisionResNet) -> list[list[Tensor]]:
    """fastai's three groups for a ResNet: stem, layer1 and layer2; layer3 and layer4; the head (fc)."""
    return [_params(model.conv1, model.bn1, model.layer1, model.layer2), _params(model.layer3, model.layer4),
            _params(model.fc)]


@register_arch(splitter=_torchvision_resnet_split, stats=IMAGENET_STATS)
def resnet18(n_in: int = 3, n_classes: int = 1000) -> TorchvisionResNet:
    """ResNet-18 (He et al. 2016) with torchvision's names: loads torchvision's `resnet18-*.pth` (11.7 M parameters)."""
    return TorchvisionResNet((2, 2, 2, 2), n_in, n_classes)


@register_arch(splitter=_torchvision_resnet_split, stats=IMAGENET_STATS)
def resnet34(n_in: int = 3, n_classes: int = 1000) -> TorchvisionResNet:
    """ResNet-34 (He et al. 2016) with torchvision's names: loads torchvision's `resnet34-*.pth` (21.8 M parameters)."""
    return TorchvisionResNet((3, 4, 6, 3), n_in, n_classes)


def arch_info(model_or_name) -> ArchInfo | None:
    """The registry's `ArchInfo` for a model built by a registered architecture (or for its name); else None."""
    name = model_or_name if isinstance(model_or_name, str) else (getattr(model_or_name, "arch_spec", None) or {}).get("name")
    return ARCH_INFO.get(name)


def layer_groups(model) -> list[list[Tensor]]:
    """The model's parameter groups, body first and head last: its architecture's splitter, else one group."""
    info = arch_info(model)
    return (info.splitter if info is not None else trainable_params)(model)


def get_arch(name: str, **kwargs) -> Module:
    """Build the architecture registered as `name` in `ARCHS`, passing `kwargs` (e.g. n_classes=10).

    Example:
        >>> get_arch("resnet", n_classes=10, width=32)
    """
    if name not in ARCHS:
        close = difflib.get_close_matches(str(name), ARCHS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown architecture {name!r}{hint}; valid names: {', '.join(sorted(ARCHS))}")
    return ARCHS[name](**kwargs)


def build_arch(spec: dict[str, Any]) -> Module:
    """Rebuild a model from its `arch_spec` (as stored in a checkpoint)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"an architecture spec is a dict with 'name' and 'kwargs', got {spec!r}")
    return get_arch(spec["name"], **dict(spec.get("kwargs") or {}))
