"""`CompileModel`: train a `torch.compile`d model, through the Learner's `wrap_model` extension point.

`learn.compile()` adds it. The compiled module is made once and kept for later fits; the user's
model stays `learn.unwrapped_model` (checkpoints, prediction and export read that one), and both
share the same tensors. Compiling costs time once (and again for each new input shape or for eval
mode), so it pays off over a run of enough steps: `benchmarks/bench_compile.py` measures where.
"""

from __future__ import annotations

from typing import Any

import torch

from groundup.callbacks.core import Callback
from groundup.nn.bridge import to_torch

__all__ = ["CompileModel"]


class CompileModel(Callback):
    """Train `torch.compile(model, **kwargs)` in place of the model during every fit.

    A groundup model is compiled through `groundup.nn.to_torch` (a `torch.nn.Module` sharing its
    tensors), so `train()`/`eval()` reach it as always. Runs after `DistributedTraining`, so a
    data-parallel model is compiled with its `DistributedDataParallel` wrapper, as PyTorch advises.

    Args:
        **kwargs: passed to `torch.compile` (`mode="max-autotune"`, `backend="aot_eager"`, `dynamic=True`, ...).

    Example:
        >>> learn.compile()          # or: learn.fit(3, cbs=[CompileModel()])
        >>> learn.fit_one_cycle(3, 0.01)
    """

    order = -6  # after SetupLearnerCB (-10) and DistributedTraining (-7) have placed and wrapped the model

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self._source: Any = None
        self._compiled: torch.nn.Module | None = None

    def before_fit(self) -> None:
        self.learn.wrap_model(self._compile)

    def _compile(self, model: Any) -> torch.nn.Module:
        if self._source is not model:  # a new model (or a new DistributedDataParallel wrapper): compile it
            self._source, self._compiled = model, torch.compile(to_torch(model), **self.kwargs)
        return self._compiled

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"CompileModel({args})"
