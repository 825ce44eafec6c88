"""Optimizers: SGD (weight decay, momentum) and Adam (decoupled weight decay), on a torch-compatible base.

`param_groups` and `state_dict()` follow torch.optim's layout, so schedules and checkpoints treat a
groundup optimizer and a `torch.optim` one alike: a schedule sets `group["lr"]` and
`group["momentum"]` (SGD) or `group["betas"]` (Adam) on every group.

The updates use `torch._foreach_*` ops, which apply one operation to a whole list of tensors in a
single call (what torch.optim itself uses on GPUs): the same math as a per-parameter loop, with far
fewer kernel launches for models with many small parameter tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from groundup.utils.checks import check_int, check_number

__all__ = ["SGD", "Adam", "Optimizer", "decay_groups", "group_lrs", "set_group_lrs", "split_by_layer_groups",
           "state_to_param_devices"]

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


class Optimizer:
    """Base class: parameter groups, per-parameter state, `step`, `zero_grad` and checkpointing.

    Subclasses pass their hyper-parameter `defaults`, and define `_update(group, params)` (the math
    for one group's parameters that have gradients) and `_validate(group)` (hyper-parameter checks).

    Args:
        params: an iterable of tensors, or of dicts `{"params": [...], "lr": ...}` (parameter groups
            whose keys override the defaults).
        defaults: hyper-parameters for groups that do not set them.

    Attributes:
        param_groups: list of dicts, each with "params" (a list of tensors) and hyper-parameters.
        state: `{parameter: {name: value}}`, e.g. momentum buffers, created on the first step.
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__} expects an iterable of tensors (model.parameters()), "
                            f"got a single tensor; wrap it in a list: [t]")
        if isinstance(params, set):
            raise TypeError(f"{type(self).__name__}: parameters must be in a fixed order (list or tuple), "
                            f"got a set; use list(...) (checkpoints refer to parameters by position)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list; pass model.parameters() "
                             f"of a model that has parameters (did you create the optimizer before the layers?)")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (missing ones come from the defaults)."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group is a dict with a 'params' key, got {group!r:.80}")
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(f"{name}: parameters must be in a fixed order (list or tuple), got a set; "
                            f"use list(...) (checkpoints refer to parameters by position)")
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name} can only optimize tensors, got {type(p).__name__} at position {i}")
            if not p.is_leaf:
                raise ValueError(f"{name} can't optimize a non-leaf tensor (position {i}, shape "
                                 f"{tuple(p.shape)}): it is computed from others; optimize its inputs, "
                                 f"or use t.detach().requires_grad_()")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear twice (in one group or in two groups); "
                             f"each parameter may be given once")
        group = {**self.defaults, **group, "params": params}
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group: dict[str, Any]) -> None:
        """Raise ValueError for bad hyper-parameters in `group` (subclasses extend this)."""
        _check_number(self, "lr", group["lr"])

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _update(group, params)")

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter that has a gradient; return `closure()`'s loss if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def zero_grad(self) -> None:
        """Drop all gradients (set `.grad` to None: cheaper than zero-filling, and the next backward writes fresh)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @property
    def lr(self) -> float:
        """The learning rate of the first group; setting it sets every group's.

        This is the walkthrough's `opt.lr`: its LR finder does `self.opt.lr *= 1.2`, its OneCycle
        `self.opt.lr = lr`, and the next `step` uses the new value in every group.
        """
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        _check_number(self, "lr", value)
        for group in self.param_groups:
            group["lr"] = value

    def state_dict(self) -> dict[str, Any]:
        """Return `{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}`, as torch does.

        Parameters are referred to by their position across all groups, so the dict holds only
        tensors, numbers, tuples and lists and loads with `torch.load(f, weights_only=True)`. Tensors
        are shared with the optimizer, not copied (save it, or deep-copy it, to keep a snapshot).
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict()` (for the same model's parameters).

        Tensor state is copied to each parameter's device (floating state also to its dtype), so a
        checkpoint saved on GPU resumes on CPU and vice versa.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict expects a dict with 'state' and 'param_groups' "
                             f"(from optimizer.state_dict()), got {type(state_dict).__name__}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state_dict has {len(saved_groups)} parameter "
                             f"groups, this optimizer has {len(self.param_groups)}")
        by_index: dict[int, Tensor] = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has {len(saved['params'])} parameters "
                                 f"in the state_dict and {len(group['params'])} here; was it saved for a "
                                 f"different model?")
            by_index.update(zip(saved["params"], group["params"]))
        new_state: dict[Tensor, dict[str, Any]] = {}
        for index, saved in state_dict["state"].items():
            if index not in by_index:
                raise ValueError(f"{name}.load_state_dict: state for parameter index {index}, which no "
                                 f"group lists")
            p = by_index[index]
            new_state[p] = {key: _restore(name, index, p, key, value) for key, value in saved.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.param_groups[0].items() if k != "params")
        n_tensors = sum(len(g["params"]) for g in self.param_groups)
        return f"{type(self).__name__}({hyper}; {len(self.param_groups)} group(s), {n_tensors} tensors)"


def decay_groups(params: Iterable[Tensor], weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: weights with 2 or more dimensions decayed by `weight_decay`, the rest not.

    The 1-D parameters are the norm layers' scales and shifts and the biases: decaying them pulls
    the normalization towards zero without limiting what a layer can express, so timm and fastai
    leave them out (`filter_bias_and_bn`, `bn_wd=False`).

    Example:
        >>> opt = Adam(decay_groups(model.parameters(), 0.05), lr=3e-3)
    """
    params = list(params)
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def state_to_param_devices(opt) -> bool:
    """Move an optimizer's state onto its parameters' devices, where the model has moved since; True if it did.

    A model moved with `.to(device)` keeps its parameter objects (groundup's `Module.to` and
    torch's both swap the data in place), so the optimizer still holds them, but its state
    (momentum buffers, Adam's moments) stays where it was made: on the CPU after a checkpoint was
    loaded there, say, while the next step's gradients are on the GPU. `Learner.fit` calls this
    after `before_fit` (where `SetupLearnerCB` places the model), so the state always follows.

    Works for groundup's optimizers and `torch.optim` ones alike: the state is reloaded through the
    optimizer's own `load_state_dict`, which puts each tensor where its parameter is (torch keeps
    a non-capturable optimizer's `step` counts on the CPU, by design; they are not counted as misplaced).
    """
    misplaced = any(isinstance(v, Tensor) and k != "step" and v.device != p.device
                    for p, state in opt.state.items() for k, v in state.items())
    if misplaced:
        opt.load_state_dict(opt.state_dict())
    return misplaced


def group_lrs(lr: float | slice, n_groups: int) -> list[float]:
    """One learning rate per layer group (body first, head last), from a number or a `slice`, as fastai reads them.

    - a number: every group gets it;
    - `slice(start, stop)`: geometrically spaced from `start` (the first group) to `stop` (the last);
    - `slice(stop)` (no start): `stop / 10` for every group but the last, which gets `stop`.

    Example:
        >>> group_lrs(slice(1e-5, 1e-3), 3)
        [1e-05, 0.0001, 0.001]
    """
    check_int("group_lrs", "n_groups", n_groups)
    if not isinstance(lr, slice):
        check_number("Learner", "lr", lr, low_inclusive=False)
        return [lr] * n_groups
    if lr.step is not None:
        raise ValueError(f"a learning-rate slice is slice(start, stop) or slice(stop), got a step: {lr!r}")
    stop = lr.stop
    check_number("Learner", "lr (the slice's stop)", stop, low_inclusive=False)
    if lr.start is None:
        return [stop / 10] * (n_groups - 1) + [stop]
    start = lr.start
    check_number("Learner", "lr (the slice's start)", start, low_inclusive=False)
    if start > stop:
        raise ValueError(f"a learning-rate slice goes from the body's (lowest) rate to the head's (highest), "
                         f"got slice({start:g}, {stop:g}); swap them")
    if n_groups == 1:
        return [stop]
    step = (stop / start) ** (1 / (n_groups - 1))
    return [start * step ** i for i in range(n_groups - 1)] + [stop]


def split_by_layer_groups(opt, layer_groups: list[list[Tensor]]) -> None:
    """Split each of `opt`'s parameter groups by layer group, in place, tagging each with its `layer_group` index.

    Works on groundup's and torch.optim's optimizers alike: their state is keyed by parameter, so it is
    kept. Each new group copies its old group's hyper-parameters (weight decay stays as `decay_groups`
    set it). Parameters in no layer group count as the head's (the last). Does nothing when the groups
    are tagged already. `set_group_lrs` then gives each group its rate.
    """
    if all("layer_group" in g for g in opt.param_groups):
        return
    index = {id(p): i for i, group in enumerate(layer_groups) for p in group}
    last = len(layer_groups) - 1
    new = []
    for group in opt.param_groups:
        by_layer: dict[int, list[Tensor]] = {}
        for p in group["params"]:
            by_layer.setdefault(index.get(id(p), last), []).append(p)
        for i in sorted(by_layer):
            new.append({**{k: v for k, v in group.items() if k != "params"}, "params": by_layer[i], "layer_group": i})
    opt.param_groups[:] = new


def set_group_lrs(opt, lrs: list[float]) -> None:
    """Set every parameter group's lr: `lrs[group["layer_group"]]`, or `lrs[-1]` (the head's) for an untagged group."""
    for group in opt.param_groups:
        group["lr"] = lrs[group.get("layer_group", len(lrs) - 1)]


def _restore(opt: str, index: int, p: Tensor, key: str, value: Any) -> Any:
    """Copy one saved state value for parameter `p` (tensors onto p's device; step counts as ints)."""
    if not isinstance(value, Tensor):
        return value
    if key == "step":  # torch.optim stores step counts as tensors; we keep Python ints (no sync to read)
        return int(value.item())
    if value.ndim and value.shape != p.shape:
        raise ValueError(f"{opt}.load_state_dict: state '{key}' of parameter {index} has shape "
                         f"{tuple(value.shape)}, the parameter has {tuple(p.shape)}")
    dtype = p.dtype if value.is_floating_point() else value.dtype
    return value.detach().to(device=p.device, dtype=dtype, copy=True)


def _check_number(opt: Any, name: str, value: Any, low: float = 0.0, high: float | None = None,
                  low_inclusive: bool = True) -> None:
    check_number(type(opt).__name__, name, value, low, high, low_inclusive)


class SGD(Optimizer):
    """Stochastic gradient descent with (coupled) weight decay and momentum, as torch.optim.SGD.

    Per parameter p with gradient g (dampening 0):
        g = g + wd * p                  # weight decay as an L2 penalty on the loss
        buf = momentum * buf + g        # (buf = g on the first step)
        p = p - lr * buf                # (p - lr * g when momentum is 0)
    With `nesterov=True` the step looks ahead along the momentum: `p = p - lr * (g + momentum * buf)`.

    Args:
        params: parameters or parameter groups (see `Optimizer`).
        lr: learning rate.
        weight_decay: weight decay (group key "weight_decay"; `wd`, the walkthrough's name, works too).
        momentum: momentum factor in [0, 1) (group key "momentum").
        nesterov: Nesterov momentum, as `torch.optim.SGD(nesterov=True)` (group key "nesterov"); needs a momentum.

    Example:
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(self, params: ParamsT, lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
                 wd: float | None = None, nesterov: bool = False) -> None:
        if wd is not None:  # the walkthrough's spelling, kept beside PyTorch's
            weight_decay = wd
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "nesterov": nesterov})

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        _check_number(self, "momentum", group["momentum"], 0.0, 1.0)
        _check_number(self, "weight_decay", group["weight_decay"])
        if not isinstance(group["nesterov"], bool):
            raise TypeError(f"SGD: nesterov must be True or False, got {group['nesterov']!r}")
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0 (Nesterov momentum looks ahead along it)")

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        grads = [p.grad for p in params]
        if wd:
            grads = torch._foreach_add(grads, params, alpha=wd)  # new tensors: .grad stays untouched
        if momentum:
            old_bufs, old_grads = [], []
            for p, g in zip(params, grads):
                state = self.state.setdefault(p, {})
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    old_bufs.append(state["momentum_buffer"])
                    old_grads.append(g)
            if old_bufs:
                torch._foreach_mul_(old_bufs, momentum)
                torch._foreach_add_(old_bufs, old_grads)
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group.get("nesterov") else bufs
        torch._foreach_add_(params, grads, alpha=-lr)


class Adam(Optimizer):
    """Adam with decoupled weight decay (AdamW), matching torch.optim.AdamW.

    Per parameter p with gradient g, at step t (Kingma & Ba 2015; Loshchilov & Hutter 2019):
        p = p * (1 - lr * wd)                       # decay the weights directly, not through g
        m = beta1 * m + (1 - beta1) * g             # running mean of gradients
        v = beta2 * v + (1 - beta2) * g**2          # running mean of squared gradients
        p = p - lr / (1 - beta1**t) * m / (sqrt(v / (1 - beta2**t)) + eps)

    Args:
        params: parameters or parameter groups (see `Optimizer`).
        lr: learning rate.
        betas: (beta1, beta2), each in [0, 1) (group key "betas"; schedules may change beta1).
        eps: added to the denominator for stability; > 0.
        weight_decay: decoupled weight decay (group key "weight_decay"; `wd` works too).
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.99),
                 eps: float = 1e-5, weight_decay: float = 0.0, wd: float | None = None) -> None:
        if wd is not None:  # the walkthrough's spelling, kept beside PyTorch's
            weight_decay = wd
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _validate(self, group: dict[str, Any]) -> None:
        super()._validate(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(betas)
        _check_number(self, "betas[0]", betas[0], 0.0, 1.0)
        _check_number(self, "betas[1]", betas[1], 0.0, 1.0)
        _check_number(self, "eps", group["eps"], low_inclusive=False)
        _check_number(self, "weight_decay", group["weight_decay"])

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = {"step": 0,
                                         "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                         "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            state["step"] += 1
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)              # m += (1 - beta1) * (g - m)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)  # v = beta2 * v + (1 - beta2) * g²
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, [math.sqrt(1.0 - beta2 ** t) for t in steps])
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, [-(lr / (1.0 - beta1 ** t)) for t in steps])
