"""The torch.nn bridge: hand a groundup model to tools that require a `torch.nn.Module`.

`torch.compile` takes a groundup model as it is. Other PyTorch tools insist on a
`torch.nn.Module`: `torch.export.export`, `torch.jit.trace`, `torch.onnx.export`,
`DistributedDataParallel`, a torch model holding a groundup one as a child. `to_torch(model)` gives
them one, without copying anything:

    groundup Sequential                      to_torch(model): TorchBridge
      _parameters {}        <── same dict ──>  _parameters
      _modules {0: ConvLayer, ...}             _modules {0: TorchBridge(ConvLayer), ...}
        ConvLayer._parameters {weight, bias} <── same dict ──> TorchBridge._parameters

Each groundup module in the tree gets one `TorchBridge`, a `torch.nn.Module` whose parameter and
buffer registries *are* the groundup module's dicts (the same objects) and whose children are the
bridges of the groundup children (torch.nn children are used as they are). So `state_dict()` has the
same keys and tensors, an optimizer built on either side trains both, and `forward` simply calls the
groundup module, which does the computation as always.

What keeps the two in step:
- `bridge.training` *is* the groundup module's `training` (a property), so `train()`/`eval()` on
  either side switch both.
- A groundup `forward` reads `self.weight` from the instance `__dict__` (groundup's fast path), not
  from `_parameters`. PyTorch's tools, though, write into the registries directly: `.to()`/`.half()`
  on a torch module put new buffer objects into `_buffers`; `torch.export` and
  `torch.func.functional_call` swap `_parameters` entries for traced ones while they run the model.
  So `to_torch` turns the groundup modules' two registries into `_AttributeSyncedDict`s, dicts that
  also set the module's attribute on every write: what torch writes is what `forward` reads.

Limits: the bridge mirrors the tree as it is when `to_torch` is called; build it after adding
modules to the groundup model. A module shared by two parents appears under both names in the
bridge's `state_dict()` (torch's rule) but under the first only in groundup's. Torch hooks
registered on the bridge's *children* do not fire when the root runs (the groundup parents call
their groundup children directly); use groundup's own hooks there, or hooks on the root bridge.
"""

from __future__ import annotations

from typing import Any

import torch

from groundup.nn.module import Module

__all__ = ["TorchBridge", "to_torch"]


def to_torch(model: Module | torch.nn.Module) -> torch.nn.Module:
    """Return a `torch.nn.Module` view of a groundup model that shares its parameters and buffers.

    Nothing is copied: the bridge's `parameters()` are the model's `Parameter` objects and its
    `state_dict()` has the same keys and tensors, so training either trains both. Calling the bridge
    calls the model. A `torch.nn.Module` is returned as it is, so `to_torch` can be applied to any model.

    Args:
        model: a groundup `Module` (or a `torch.nn.Module`).

    Returns:
        a `TorchBridge` (a `torch.nn.Module`) whose `.module` is `model`.

    Example:
        >>> model = simple_cnn()
        >>> bridge = to_torch(model)
        >>> list(bridge.state_dict()) == list(model.state_dict())
        True
        >>> program = torch.export.export(bridge.eval(), (torch.randn(1, 3, 64, 64),))
        >>> ddp = torch.nn.parallel.DistributedDataParallel(to_torch(model))   # in a process group
    """
    if isinstance(model, torch.nn.Module):
        return model
    if not isinstance(model, Module):
        raise TypeError(f"to_torch expects a groundup Module (or a torch.nn.Module, returned as it is), "
                        f"got {type(model).__name__}")
    return TorchBridge(model)


class TorchBridge(torch.nn.Module):
    """A `torch.nn.Module` over one groundup module: the same parameter and buffer dicts, bridged children.

    Made by `to_torch`; `.module` is the groundup module. See this file's docstring for what is shared.
    """

    def __init__(self, module: Module, _bridges: dict[int, TorchBridge] | None = None) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"TorchBridge wraps a groundup Module, got {type(module).__name__}; "
                            f"use to_torch(model), which also accepts torch.nn.Modules")
        # `module` goes straight into __dict__: it is neither a parameter nor a child in torch's sense,
        # and `training` (a property below) reads it while torch's __init__ runs.
        self.__dict__["module"] = module
        mode = module.training
        super().__init__()  # sets self.training = True, i.e. module.training: restored below
        self.training = mode
        _bridges = {} if _bridges is None else _bridges
        _bridges[id(module)] = self
        d = self.__dict__
        for registry in ("_parameters", "_buffers"):  # the very same dicts: one registry, seen from both sides
            shared = module.__dict__[registry]
            if not isinstance(shared, _AttributeSyncedDict):
                shared = module.__dict__[registry] = _AttributeSyncedDict(module, shared)
            d[registry] = shared
        d["_non_persistent_buffers_set"] = module._non_persistent_buffers_set
        for name, child in module._modules.items():
            if isinstance(child, Module):  # a child shared by two parents gets one bridge, as in torch
                child = _bridges.get(id(child)) or TorchBridge(child, _bridges)
            self._modules[name] = child

    @property
    def training(self) -> bool:  # type: ignore[override]
        """The groundup module's mode: the bridge keeps no mode of its own."""
        return self.__dict__["module"].training

    @training.setter
    def training(self, mode: bool) -> None:
        object.__setattr__(self.__dict__["module"], "training", mode)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def _get_name(self) -> str:  # shown by torch's repr: to_torch(Sequential)( (0): to_torch(ConvLayer)(...) ...)
        return f"to_torch({type(self.module).__name__})"

    def extra_repr(self) -> str:
        return self.module.extra_repr()


class _AttributeSyncedDict(dict):
    """A groundup module's `_parameters` or `_buffers` that also sets the module's attribute on every
    `d[name] = value`, as `Module.__setattr__` does for its own writes (see the file's docstring).

    Only item assignment is synced: it is what torch.nn.Module and torch's tools use.
    """

    def __init__(self, owner: Module, items: dict[str, Any]) -> None:
        super().__init__(items)
        self.owner = owner

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, value)
        owner = self.__dict__.get("owner")  # not set yet while unpickling (items come before attributes)
        if owner is not None:
            object.__setattr__(owner, name, value)
