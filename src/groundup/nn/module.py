"""Parameter, Module and forward hooks: the bookkeeping that turns tensors into a trainable model.

A `Module` keeps three registries, filled by `__setattr__` from the type of the value assigned:

- `_parameters`: `Parameter`s (tensors the optimizer updates),
- `_buffers`: tensors that are state but not trained (BatchNorm's running mean and variance),
- `_modules`: child modules (groundup `Module`s, or `torch.nn.Module`s for interop).

Every registered value is *also* stored as an ordinary instance attribute, so `self.weight` in
`forward` is a plain `__dict__` lookup: no `__getattr__` fallback on the hot path. The registries
use the same names as `torch.nn.Module`'s, which lets the recursive walks below (`named_parameters`,
`state_dict`, ...) treat groundup and torch children alike.

Why `Parameter` derives from `torch.nn.Parameter`: the chapter's idea is only a *marker*, a tensor
subclass that says "train me" so that `__setattr__` can register it by type. Any marker would do
for groundup itself, but PyTorch's tools look for theirs: the compiler (`torch.compile`'s Dynamo
and AOTAutograd), `torch.export`, `jit.trace` and DistributedDataParallel treat `torch.nn.Parameter`
(and its subclasses) as a plain tensor that is a model input, while any *other* tensor subclass is
taken for a custom tensor type whose every op must go through `__torch_dispatch__`. A bare
`torch.Tensor` subclass has no such handler, so compiling failed with "Multiple dispatch failed
for 'aten.convolution.default'". Deriving from torch's class keeps our own `Parameter` name,
constructor checks, repr and pickling while PyTorch's compiler and autograd see a parameter.
Results of ops are plain tensors, as before (torch's class disables `__torch_function__`).

`Module`, on the other hand, is not a `torch.nn.Module`: it is the chapter's from-scratch class,
and code that asks "is this a torch module?" (DistributedCB, for one) relies on the answer. Tools
that insist on a torch module get `groundup.nn.to_torch(model)`, a torch.nn.Module view that shares
the tensors. One consequence needs care: a torch.nn.Module registers a child only if
`isinstance(value, torch.nn.Module)`, so a groundup model assigned into one would be kept as a plain
attribute and silently left out of its `parameters()` and `state_dict()`. torch offers no hook for
that assignment, but Python's `isinstance`, when the class test fails, asks the object for its
`__class__`; `Module.__class__` answers as usual, except when the asker is torch's `__setattr__` or
`add_module`: then it raises an error that says to wrap the model with `to_torch`.
"""

from __future__ import annotations

import itertools
import sys
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self

import torch
from torch import Tensor
from torch.utils.hooks import BackwardHook

__all__ = ["HookHandle", "Hooks", "IncompatibleKeys", "Module", "Parameter", "ParameterList", "StateDictError"]

HookFn = Callable[[Any, tuple, Any], Any]
PreHookFn = Callable[[Any, tuple], Any]
BackwardHookFn = Callable[[Any, tuple, tuple], Any]


class Parameter(torch.nn.Parameter):
    """A tensor that a `Module` registers as trainable: it requires grad unless told otherwise.

    A marker subclass of `torch.nn.Parameter` (why: see the module docstring), so `torch.compile`,
    `torch.export` and torch's optimizers treat it as a parameter.

    Args:
        data: the initial values (copied by reference, detached from any graph); an empty tensor if None.
        requires_grad: whether autograd tracks it (default True).

    Example:
        >>> w = Parameter(torch.zeros(10, 784))
        >>> w.requires_grad
        True
    """

    # Results of ops on a Parameter are plain tensors (as with torch.nn.Parameter), and skipping the
    # Python-level __torch_function__ dispatch keeps `F.conv2d(x, self.weight)` as fast as for a Tensor.
    # (torch.nn.Parameter sets the same; repeated here because the hot path depends on it.)
    __torch_function__ = torch._C._disabled_torch_function_impl

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Self:
        if data is None:
            data = torch.empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a torch.Tensor, got {type(data).__name__}; "
                            f"wrap the values first: Parameter(torch.tensor(...))")
        return torch.Tensor._make_subclass(cls, data.detach(), requires_grad)

    def __repr__(self) -> str:
        return f"Parameter containing:\n{self.detach()!r}"

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) not in memo:
            memo[id(self)] = type(self)(self.data.clone(memory_format=torch.preserve_format),
                                        self.requires_grad)
        return memo[id(self)]

    def __reduce_ex__(self, protocol):
        # Pickle as (values, requires_grad); hooks and autograd history are not saved (as in torch).
        return (_rebuild_parameter, (self.data, self.requires_grad))


def _rebuild_parameter(data: Tensor, requires_grad: bool) -> Parameter:
    return Parameter(data, requires_grad)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What `load_state_dict` did not match: keys the model has but the dict lacks, and the reverse."


class StateDictError(RuntimeError, ValueError):
    """A state dict that does not fit the model (catch it as RuntimeError, like torch's, or ValueError)."""


_hook_ids = itertools.count()

# torch.nn.Module's two ways of registering a child; each first tests isinstance(value, torch.nn.Module)
_TORCH_CHILD_REGISTRATION = {torch.nn.Module.__setattr__.__code__, torch.nn.Module.add_module.__code__}


class ParameterList(list):
    """What `Module.parameters()` returns: a list (the walkthrough's `len(m.parameters())`) that is
    also an iterator over itself, so PyTorch's `next(model.parameters())` works as on torch's generator."""

    _next = 0

    def __next__(self) -> Parameter:
        if self._next >= len(self):
            raise StopIteration
        self._next += 1
        return self[self._next - 1]


class HookHandle:
    """Removes one hook; `with module.register_forward_hook(fn):` removes it on leaving the block."""

    def __init__(self, hooks: dict[int, Callable], key: int) -> None:
        self._hooks, self.id = hooks, key

    def remove(self) -> None:
        """Unregister the hook (calling it again does nothing)."""
        self._hooks.pop(self.id, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class _SlotHook:
    """Adapts the walkthrough's `hook(output, inputs)` to a forward hook `(module, inputs, output)`."""

    def __init__(self, fn: Callable[[Any, tuple], Any]) -> None:
        self.fn = fn

    def __call__(self, module: Any, inputs: tuple, output: Any) -> None:
        self.fn(output, inputs)  # returns None: the walkthrough ignores what its hook returns


def _is_module(value: Any) -> bool:
    return isinstance(value, (Module, torch.nn.Module))


def _is_parameter(value: Any) -> bool:
    return isinstance(value, (Parameter, torch.nn.Parameter))


class Module:
    """Base class of groundup layers and models: registers parameters, buffers and children.

    Subclasses call `super().__init__()` first, assign `Parameter`s and sub-modules as attributes and
    define `forward`. Calling the module runs `forward`, then any forward hooks.

    Example:
        >>> class TwoLayer(Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden, self.out = Linear(2, 8), Linear(8, 1)
        ...     def forward(self, x):            # (bs, 2)
        ...         return self.out(self.hidden(x).relu())  # (bs, 1)
        >>> [name for name, _ in TwoLayer().named_parameters()]
        ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    """

    training: bool

    @property
    def __class__(self) -> type:  # type: ignore[override]
        """The object's class, as always; raises when a torch.nn.Module is about to store this module.

        Python's `isinstance(obj, cls)` reads `obj.__class__` when `type(obj)` is not a subclass of
        `cls`; torch.nn.Module tests `isinstance(value, torch.nn.Module)` before registering a child and
        keeps anything else as a plain, unregistered attribute. So this is the one moment at which
        groundup can refuse instead of letting the model drop out of the torch parent's parameters.
        Only failed isinstance tests come here: no cost on the hot path.
        """
        caller = sys._getframe(1)
        if caller.f_code in _TORCH_CHILD_REGISTRATION:
            parent, name = caller.f_locals.get("self"), caller.f_locals.get("name")
            ours, theirs = f"{type(self).__module__}.{type(self).__qualname__}", torch.typename(parent)
            raise TypeError(
                f"cannot put the groundup module {ours} into the torch.nn.Module {theirs} as '{name}': torch "
                f"registers only torch.nn.Modules, so its parameters would be missing from the torch "
                f"module's parameters() and state_dict(). Wrap it first: groundup.nn.to_torch(model) is a "
                f"torch.nn.Module that shares the model's tensors")
        return type(self)

    def __init__(self) -> None:
        d = self.__dict__  # set directly: our own __setattr__ needs these to exist first
        d["_parameters"], d["_buffers"], d["_modules"] = {}, {}, {}
        d["_non_persistent_buffers_set"] = set()
        d["_forward_hooks"] = {}
        # Forward pre-hooks and full backward hooks share one dict of (kind, hook), so that __call__'s
        # fast path tests one dict for both (each extra attribute read costs every module call).
        d["_pre_and_backward_hooks"] = {}
        d["training"] = True

    # -- registration ---------------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "hook":  # the walkthrough's hook slot: registered, never a plain attribute (see `hook`)
            self._set_hook(value)
            return
        d = self.__dict__
        params = d.get("_parameters")
        if params is None and (_is_parameter(value) or _is_module(value)):
            kind = "Parameter" if _is_parameter(value) else type(value).__name__
            raise AttributeError(
                f"cannot assign {kind} '{name}' to {type(self).__name__} before Module.__init__() ran; "
                f"call super().__init__() at the top of {type(self).__name__}.__init__")
        if params is None:
            object.__setattr__(self, name, value)
            return
        if _is_parameter(value):
            self._forget(name)
            params[name] = value
        elif _is_module(value):
            self._forget(name)
            d["_modules"][name] = value
        elif name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}.{name} is a buffer; assign a tensor or None, "
                                f"got {type(value).__name__}")
            d["_buffers"][name] = value
        elif name in params and value is not None:
            raise TypeError(
                f"{type(self).__name__}.{name} is a Parameter; got a {type(value).__name__}. Wrap new "
                f"values as Parameter(t), or change the values in place under torch.no_grad(): "
                f"self.{name}.copy_(t)")
        else:
            self._forget(name)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name == "hook":
            self._set_hook(None)
            return
        self._forget(name)
        object.__delattr__(self, name)

    def _forget(self, name: str) -> None:
        d = self.__dict__
        d["_parameters"].pop(name, None)
        d["_modules"].pop(name, None)
        d["_buffers"].pop(name, None)
        d["_non_persistent_buffers_set"].discard(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register `param` under `name` (same as `setattr(self, name, param)` for a Parameter)."""
        if param is not None and not _is_parameter(param):
            raise TypeError(f"register_parameter('{name}') expects a Parameter, got {type(param).__name__}; "
                            f"wrap it: Parameter(t)")
        setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register a non-trained tensor (e.g. a running mean) that moves with `.to` and is saved.

        Args:
            name: attribute name.
            tensor: the value (or None for "not set yet").
            persistent: whether `state_dict` includes it.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError(f"cannot register buffer '{name}' on {type(self).__name__} before "
                                 f"Module.__init__() ran; call super().__init__() first")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer('{name}') expects a tensor or None, got {type(tensor).__name__}")
        if _is_parameter(tensor):
            raise TypeError(f"register_buffer('{name}') got a Parameter; buffers are not trained, so pass "
                            f"a plain tensor (t.detach()) or register it as a parameter instead")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers_set.add(name)
        object.__setattr__(self, name, tensor)

    def register_module(self, name: str, module: AnyModule | None) -> None:
        """Register `module` as a child under `name` (same as `setattr(self, name, module)`)."""
        if module is not None and not _is_module(module):
            raise TypeError(f"register_module('{name}') expects a Module, got {type(module).__name__}")
        setattr(self, name, module)

    add_module = register_module  # torch's name for the same thing

    def register_modules(self, *modules: AnyModule) -> None:
        """Register several children at once, named by position ('0', '1', ...), as `Sequential` does.

        Use this when the modules live in a list or tuple attribute, which `__setattr__` does not scan.
        """
        for module in modules:
            if not _is_module(module):
                raise TypeError(f"register_modules expects Modules, got {type(module).__name__} "
                                f"at position {len(self._modules)}")
            self.register_module(str(len(self._modules)), module)

    # -- calling --------------------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the output; every subclass defines this."""
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define forward(self, x) in it")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._pre_and_backward_hooks:  # rare: the same steps as below, plus those hooks
            return self._call_with_all_hooks(args, kwargs)
        out = self.forward(*args, **kwargs)
        if self._forward_hooks:  # fast path: one dict truth test when no hooks are registered
            for hook in tuple(self._forward_hooks.values()):
                result = hook(self, args, out)
                if result is not None:  # as in torch, a hook may replace the output
                    out = result
        return out

    def register_forward_hook(self, hook: HookFn) -> HookHandle:
        """Call `hook(module, inputs, output)` after every forward pass; return a handle to remove it.

        `inputs` is the tuple of positional arguments given to the module. As in torch, a hook that
        returns something other than None replaces the output. Several hooks run in registration order.

        Example:
            >>> with layer.register_forward_hook(lambda m, inp, out: print(out.shape)):
            ...     layer(x)  # prints the output shape; the hook is removed after the block
        """
        if not callable(hook):
            raise TypeError(f"register_forward_hook expects a function hook(module, inputs, output), "
                            f"got {type(hook).__name__}")
        key = next(_hook_ids)
        self._forward_hooks[key] = hook
        return HookHandle(self._forward_hooks, key)

    @property
    def hook(self) -> Callable[[Any, tuple], Any] | None:
        """The walkthrough's one-slot forward hook: `hook(output, inputs)` runs after each forward; None if unset.

        Setting it registers the function through `register_forward_hook`, replacing the one set
        before; setting None (or `del module.hook`) removes it. What it returns is ignored, as in the
        walkthrough. It runs beside any hooks registered with `register_forward_hook`.

        Example:
            >>> def print_stats(outp, inp): print(outp.mean().item(), outp.std().item())
            >>> for i in range(4): model.layers[i].hook = print_stats   # prints 4 lines per forward
            >>> for i in range(4): model.layers[i].hook = None
        """
        handle = self.__dict__.get("_hook_handle")
        slot = None if handle is None else self._forward_hooks.get(handle.id)
        return None if slot is None else slot.fn

    def _set_hook(self, fn: Callable[[Any, tuple], Any] | None) -> None:
        d, owner = self.__dict__, type(self).__name__
        if "_forward_hooks" not in d:
            raise AttributeError(f"cannot set {owner}.hook before Module.__init__() ran; "
                                 f"call super().__init__() at the top of {owner}.__init__")
        if fn is not None and not callable(fn):
            raise TypeError(f"{owner}.hook must be a function hook(output, inputs), or None to remove it; "
                            f"got {type(fn).__name__}")
        handle = d.pop("_hook_handle", None)
        if handle is not None:
            handle.remove()
        if fn is not None:
            d["_hook_handle"] = self.register_forward_hook(_SlotHook(fn))
    def register_forward_pre_hook(self, hook: PreHookFn) -> HookHandle:
        """Call `hook(module, inputs)` before every forward pass; return a handle to remove it.

        `inputs` is the tuple of positional arguments. As in torch, a hook that returns something other
        than None replaces the inputs: a tuple is used as the new arguments, anything else as the one
        argument. Several hooks run in registration order, each seeing the previous one's inputs.

        Example:
            >>> layer.register_forward_pre_hook(lambda m, inputs: (inputs[0].float(),))
        """
        if not callable(hook):
            raise TypeError(f"register_forward_pre_hook expects a function hook(module, inputs), "
                            f"got {type(hook).__name__}")
        key = next(_hook_ids)
        self._pre_and_backward_hooks[key] = ("pre", hook)
        return HookHandle(self._pre_and_backward_hooks, key)

    def register_full_backward_hook(self, hook: BackwardHookFn) -> HookHandle:
        """Call `hook(module, grad_input, grad_output)` when the gradients of this module's inputs are
        computed; return a handle to remove it.

        `grad_output` is the tuple of gradients of the loss with respect to the module's outputs,
        `grad_input` the same for its positional tensor inputs (None for inputs that need no gradient).
        As in torch, a hook may return a new tuple to use in place of `grad_input`, and it must not
        modify its arguments in place. Uses torch's own `torch.utils.hooks.BackwardHook`, so the
        behaviour (including the errors for inputs modified in place) is torch's.

        Example:
            >>> norms = []
            >>> layer.register_full_backward_hook(lambda m, gin, gout: norms.append(gout[0].norm()))
        """
        if not callable(hook):
            raise TypeError(f"register_full_backward_hook expects a function hook(module, grad_input, "
                            f"grad_output), got {type(hook).__name__}")
        key = next(_hook_ids)
        self._pre_and_backward_hooks[key] = ("backward", hook)
        return HookHandle(self._pre_and_backward_hooks, key)

    def _call_with_all_hooks(self, args: tuple, kwargs: dict) -> Any:
        """`__call__` when pre-hooks or backward hooks exist, in torch's order: pre-hooks, forward,
        forward hooks, then the output is wrapped so backward hooks see its gradient."""
        hooks = tuple(self._pre_and_backward_hooks.values())
        for kind, hook in hooks:
            if kind == "pre":
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        backward_hooks = [hook for kind, hook in hooks if kind == "backward"]
        backward_hook = None
        if backward_hooks:
            backward_hook = BackwardHook(self, backward_hooks, [])
            args = backward_hook.setup_input_hook(args)
        out = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        if backward_hook is not None:
            out = backward_hook.setup_output_hook(out)
        return out

    # -- walking the tree -----------------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, AnyModule]]:
        """Yield `(name, module)` for this module and every descendant, each once."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[AnyModule]:
        """Yield this module and every descendant (depth first, in registration order)."""
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, AnyModule]]:
        """Yield `(name, child)` for the direct children."""
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self) -> Iterator[AnyModule]:
        """Yield the direct children."""
        for _, module in self.named_children():
            yield module

    def get_submodule(self, target: str) -> AnyModule:
        """Return the descendant at the dotted path `target` (the names `named_modules` gives), or self for "".

        Example:
            >>> resnet().get_submodule("1.convs.0")    # stage 1's first conv_bn
        """
        if not isinstance(target, str):
            raise TypeError(f"get_submodule expects a dotted name such as '0.convs', got {target!r}")
        module: AnyModule = self
        path = []
        for name in target.split(".") if target else []:
            child = module._modules.get(name)
            if child is None:
                where = ".".join(path) or "the model"
                raise AttributeError(
                    f"{type(self).__name__} has no submodule '{target}': {where} ({type(module).__name__}) "
                    f"has no child '{name}'; its children: {', '.join(module._modules) or 'none'}")
            module = child
            path.append(name)
        return module

    def _named_tensors(self, registry: str) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, t in getattr(module, registry).items():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield (f"{prefix}.{name}" if prefix else name), t

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """Yield `(dotted name, parameter)` for every parameter in the tree, shared ones once."""
        return self._named_tensors("_parameters")

    def parameters(self) -> ParameterList:
        """Every parameter in the tree (what an optimizer needs), shared ones once, torch.nn children's too.

        A list, as in the walkthrough, so `len(model.parameters())` counts the parameter tensors
        (10 for `simple_cnn`); iterating over it works as over torch's generator, and so does
        torch's idiom `next(model.parameters())` (see `ParameterList`).
        """
        return ParameterList(p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """Yield `(dotted name, buffer)` for every buffer in the tree."""
        return self._named_tensors("_buffers")

    def buffers(self) -> Iterator[Tensor]:
        """Yield every buffer in the tree."""
        for _, b in self.named_buffers():
            yield b

    def apply(self, fn: Callable[[AnyModule], None]) -> Module:
        """Call `fn(module)` on every module in the tree (e.g. a custom init); return self."""
        for module in self.modules():
            fn(module)
        return self

    # -- modes and devices ----------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Set training mode (`mode=True`) or evaluation mode on this module and all descendants."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) expects a bool, got {mode!r}")
        self.__dict__["training"] = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode everywhere (BatchNorm then uses its running statistics); same as train(False)."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Turn gradient tracking on or off for every parameter (freeze with False); return self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self) -> None:
        """Drop the gradients (set `.grad` to None, which is cheaper than filling with zeros)."""
        for p in self.parameters():
            p.grad = None

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Move parameters and buffers to a device and/or cast floating ones to a dtype; return self.

        Takes the arguments of `torch.nn.Module.to`: a device, a dtype, both, a tensor (its device and
        dtype), and the keywords `device=`, `dtype=`, `non_blocking=` and `memory_format=`. A memory
        format applies to 4-D and 5-D tensors only (conv weights), as in torch.

        Parameters stay the same `Parameter` objects (their `.data` is swapped), so an optimizer built
        before the move still holds them.

        Example:
            >>> model.to("cuda")           # or model.to(torch.float64), model.to("cuda", torch.bfloat16)
            >>> model.to(memory_format=torch.channels_last)   # NHWC conv weights (feed NHWC-strided input too)
        """
        device, dtype, non_blocking, memory_format = _parse_to(type(self).__name__, args, kwargs)

        def convert(t: Tensor) -> Tensor:
            cast = dtype if t.is_floating_point() or t.is_complex() else None
            if memory_format is not None and t.dim() in (4, 5):
                return t.to(device=device, dtype=cast, non_blocking=non_blocking, memory_format=memory_format)
            return t.to(device=device, dtype=cast, non_blocking=non_blocking)

        options = {"device": device, "dtype": dtype, "non_blocking": non_blocking, "memory_format": memory_format}
        options = {k: v for k, v in options.items() if v is not None}
        return self._convert_tensors(convert, lambda child: child.to(**options))

    def cuda(self, device: int | str | torch.device | None = None) -> Module:
        """Move parameters and buffers to a CUDA device (the current one by default); return self."""
        return self._convert_tensors(lambda t: t.cuda(device), lambda child: child.cuda(device))

    def cpu(self) -> Module:
        """Move parameters and buffers to the CPU; return self."""
        return self._convert_tensors(lambda t: t.cpu(), lambda child: child.cpu())

    def _cast_floats(self, dtype: torch.dtype, cast_torch_child: Callable[[torch.nn.Module], Any]) -> Module:
        # As torch's .half() and friends: floating point tensors only (not complex, not integer ones).
        return self._convert_tensors(lambda t: t.to(dtype) if t.is_floating_point() else t, cast_torch_child)

    def half(self) -> Module:
        """Cast floating point parameters and buffers to float16; return self."""
        return self._cast_floats(torch.float16, lambda child: child.half())

    def bfloat16(self) -> Module:
        """Cast floating point parameters and buffers to bfloat16; return self."""
        return self._cast_floats(torch.bfloat16, lambda child: child.bfloat16())

    def float(self) -> Module:
        """Cast floating point parameters and buffers to float32; return self."""
        return self._cast_floats(torch.float32, lambda child: child.float())

    def double(self) -> Module:
        """Cast floating point parameters and buffers to float64; return self."""
        return self._cast_floats(torch.float64, lambda child: child.double())

    def _convert_tensors(self, convert: Callable[[Tensor], Tensor],
                         convert_torch_child: Callable[[torch.nn.Module], Any]) -> Module:
        """Apply `convert` to every parameter (and its gradient) and buffer of the groundup modules in
        the tree, and `convert_torch_child` to each torch.nn child (which converts its own subtree)."""
        for module in self.modules():
            if not isinstance(module, Module):
                continue  # torch.nn children are handled by convert_torch_child below
            for p in module._parameters.values():
                if p is None:
                    continue
                grad = p.grad
                with torch.no_grad():
                    new = convert(p.data)
                    if torch._has_compatible_shallow_copy_type(p.data, new):
                        p.data = new  # CPU <-> CUDA: the same Parameter object, so optimizers keep it
                    else:  # e.g. to the meta device, which .data cannot take: swap contents, keep the object
                        p.grad = None
                        torch.utils.swap_tensors(p, type(p)(new, requires_grad=p.requires_grad))
                if grad is not None:
                    p.grad = convert(grad)
            for name, b in list(module._buffers.items()):
                if b is not None:
                    b = convert(b)
                    module._buffers[name] = b
                    object.__setattr__(module, name, b)
            for child in module._modules.values():
                if child is not None and not isinstance(child, Module):
                    convert_torch_child(child)
        return self

    # -- saving and loading ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        """Return `{dotted name: tensor}` for every parameter and persistent buffer, keyed like torch.

        Values are plain detached tensors (not Parameters) sharing memory with the model, so
        `torch.save(model.state_dict(), f)` loads back with `torch.load(f, weights_only=True)`.
        """
        out: dict[str, Tensor] = {}
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[dot + name] = p.detach()
            skip = getattr(module, "_non_persistent_buffers_set", ())
            for name, b in module._buffers.items():
                if b is not None and name not in skip:
                    out[dot + name] = b.detach()
        return out

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True) -> IncompatibleKeys:
        """Copy values from `state_dict` into this model's parameters and buffers.

        Args:
            state_dict: `{dotted name: tensor}`, as made by `state_dict()` (here or in torch).
            strict: if True, keys the model has but the dict lacks (missing) or the reverse
                (unexpected) raise a `StateDictError`; if False they are returned. Shape mismatches
                always raise.

        Returns:
            `IncompatibleKeys(missing_keys, unexpected_keys)`.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict expects a dict of tensors, got {type(state_dict).__name__}")
        targets: dict[str, tuple[Any, str, bool]] = {}  # key -> (module, name, is_parameter)
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    targets[dot + name] = (module, name, True)
            skip = getattr(module, "_non_persistent_buffers_set", ())
            for name, b in module._buffers.items():
                if b is not None and name not in skip:
                    targets[dot + name] = (module, name, False)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        mismatched = []
        for key, (module, name, _) in targets.items():
            if key in state_dict:
                have = getattr(module, name).shape
                got = state_dict[key].shape if isinstance(state_dict[key], Tensor) else None
                if got != have:
                    mismatched.append(f"{key}: checkpoint has {_shape(got)}, model has {_shape(have)}")
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append(f"missing keys (in the model, not in the dict): {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys (in the dict, not in the model): {unexpected}")
        if problems:
            hint = " (pass strict=False to load the matching keys only)" if not mismatched else ""
            raise StateDictError(f"error loading state_dict into {type(self).__name__}: "
                                 + " | ".join(problems) + hint)
        with torch.no_grad():
            for key, (module, name, _) in targets.items():
                if key in state_dict:
                    getattr(module, name).copy_(state_dict[key])
        return IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        """The text inside `Name(...)` in the repr; layers override it to show their sizes."""
        return ""

    def __repr__(self) -> str:
        n_params = sum(p.numel() for p in self.parameters())
        count = f"  # {n_params:,} parameters" if n_params else ""
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()}){count}"
        lines = [f"{type(self).__name__}({count}"]
        if self.extra_repr():
            lines.append(f"  {self.extra_repr()}")
        for name, child in self.named_children():
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {text}")
        return "\n".join(lines) + "\n)"


AnyModule = Module | torch.nn.Module  # a child may be either kind (interop)


def _shape(shape: Any) -> str:
    return "no tensor" if shape is None else str(tuple(shape))


def _parse_to(owner: str, args: tuple, kwargs: dict
              ) -> tuple[torch.device | None, torch.dtype | None, bool, torch.memory_format | None]:
    """Read device, dtype, non_blocking and memory format from `.to(...)` arguments, as `Module.to` in torch."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    non_blocking, memory_format = kwargs.pop("non_blocking", False), kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"{owner}.to got unexpected keyword arguments {sorted(kwargs)}; use device=, dtype=, "
                        f"non_blocking= and memory_format=")
    if memory_format is not None and not isinstance(memory_format, torch.memory_format):
        raise TypeError(f"{owner}.to(memory_format=...) expects a torch.memory_format such as "
                        f"torch.channels_last, got {memory_format!r}")
    for arg in args:
        if isinstance(arg, bool):  # before int: .to("cuda", torch.half, True) is non_blocking, as in torch
            non_blocking = arg
        elif isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, (str, int, torch.device)):
            device = arg
        elif isinstance(arg, Tensor):
            device, dtype = arg.device, arg.dtype
        else:
            raise TypeError(f"{owner}.to expects a device ('cpu', 'cuda:0') and/or a dtype "
                            f"(torch.float32), got {arg!r}")
    if dtype is not None and not (dtype.is_floating_point or dtype.is_complex):
        raise TypeError(f"{owner}.to only casts to floating point or complex dtypes, got {dtype}; "
                        f"model weights must stay floating point")
    return (torch.device(device) if device is not None else None), dtype, bool(non_blocking), memory_format


class Hooks(list):
    """Forward hooks on several modules: a list of handles and a context manager that removes them.

    Works for groundup `Module`s and `torch.nn.Module`s alike (each registers with its own
    `register_forward_hook`). Removal happens on leaving the `with` block or on `remove()`, never
    in `__del__`.

    Args:
        modules: the modules to watch (a `Sequential` iterates over its layers).
        fn: called as `fn(module, inputs, output)` after each watched module's forward.

    Example:
        >>> means = []
        >>> with Hooks(model, lambda m, inp, out: means.append(out.mean().item())):
        ...     model(xb)
        >>> len(means) == len(model)
        True
    """

    def __init__(self, modules: Iterable[AnyModule], fn: HookFn) -> None:
        if _is_module(modules) and not hasattr(modules, "__iter__"):
            raise TypeError(f"Hooks expects an iterable of modules, got one {type(modules).__name__}; "
                            f"wrap it in a list: Hooks([module], fn)")
        modules = list(modules)
        for i, m in enumerate(modules):
            if not _is_module(m):
                raise TypeError(f"Hooks expects modules, got {type(m).__name__} at position {i}")
        super().__init__(m.register_forward_hook(fn) for m in modules)

    def remove(self) -> None:
        """Remove every hook."""
        for handle in self:
            handle.remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

