"""`TrackActivations`: activation statistics (mean, std, near-zero share, histogram) during `fit`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from groundup.callbacks.core import Callback
from groundup.nn.stats import ActivationStats


class TrackActivations(Callback):
    """Watch the outputs of `modules` (default: the model's direct children) while training.

    Hooks are attached in `before_fit` and removed in `after_fit` (also after a cancel or an
    error); the `ActivationStats` stays readable as `.stats` afterwards, and its plot is written
    to `path` when given.

    Args:
        modules: modules to watch, or a function `model -> modules`; default `model.children()`.
        path: write `stats.plot(path)` at the end of `fit`.
        **kwargs: passed to `ActivationStats` (bins, hist_range, zero_threshold, train_only).

    Example:
        >>> cb = TrackActivations(path="activations.png")
        >>> learn.fit(1, cbs=[cb]); cb.stats.means[0]
    """

    order = 30

    def __init__(self, modules: Iterable | Callable | None = None, path: str | os.PathLike | None = None,
                 **kwargs):
        self.modules, self.path, self.kwargs = modules, path, kwargs
        self.stats: ActivationStats | None = None

    def before_fit(self) -> None:
        model = self.learn.model
        mods = self.modules(model) if callable(self.modules) else self.modules
        self.stats = ActivationStats(list(model.children()) if mods is None else mods, **self.kwargs)

    def after_fit(self) -> None:
        if self.stats is not None:
            self.stats.remove()
            if self.path is not None and self.stats.means and len(self.stats.means[0]):
                self.stats.plot(self.path)


