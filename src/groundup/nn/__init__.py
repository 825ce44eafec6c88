"""Neural-network building blocks: Parameter and Module, layers, ready-made models, activation statistics."""

from groundup.nn.bridge import TorchBridge, to_torch
from groundup.nn.layers import (
    AdaptivePool,
    BatchNorm,
    ConvLayer,
    Flatten,
    Linear,
    ReLU,
    Sequential,
    kaiming_normal_,
    xavier_normal_,
)
from groundup.nn.models import (
    ARCHS,
    ResBlock,
    build_arch,
    conv_bn,
    get_arch,
    register_arch,
    resnet,
    resnet_fast,
    simple_cnn,
)
from groundup.nn.module import HookHandle, Hooks, IncompatibleKeys, Module, Parameter, StateDictError
from groundup.nn.stats import ActivationStats

__all__ = [
    "ARCHS",
    "ActivationStats",
    "AdaptivePool",
    "BatchNorm",
    "ConvLayer",
    "Flatten",
    "HookHandle",
    "Hooks",
    "IncompatibleKeys",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "ResBlock",
    "Sequential",
    "StateDictError",
    "TorchBridge",
    "build_arch",
    "conv_bn",
    "get_arch",
    "kaiming_normal_",
    "register_arch",
    "resnet",
    "resnet_fast",
    "simple_cnn",
    "to_torch",
    "xavier_normal_",
]
