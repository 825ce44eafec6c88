"""Activation statistics: watch what each layer outputs during training, batch by batch.

Healthy training keeps activations' mean and std steady across layers; exploding or collapsing
values, or a growing share of zeros after ReLU ("dead" units), show up here first (the book's
"colorful dimension" plots). This is an opt-in diagnostic: recording copies a few numbers per layer
per batch to the CPU, which synchronizes with the GPU, so leave it off for speed runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self

import torch
from torch import Tensor

from groundup.utils.checks import check_int
from groundup.nn.module import Hooks, Module

__all__ = ["ActivationStats", "layer_stats"]


class ActivationStats:
    """Record each watched module's output statistics on every (training) forward pass.

    Per module per forward pass it keeps one small CPU tensor: mean, std, the share of values with
    |x| < `zero_threshold`, and a `bins`-bin histogram over `hist_range`. No activation tensors are
    kept. Works on groundup and torch.nn modules; remove the hooks by leaving the `with` block or
    calling `remove()`.

    Args:
        modules: the modules to watch (e.g. a `Sequential`, which iterates over its layers).
        bins: histogram bins.
        hist_range: (low, high) of the histogram; values outside it are not counted. The default
            (0, 10) suits ReLU outputs of a normalized network.
        zero_threshold: |x| below this counts as "near zero" (1e-3: a ReLU's zeros and values
            indistinguishable from them).
        train_only: record only when the module is in training mode (skip validation batches).

    Example:
        >>> with ActivationStats(model) as stats:
        ...     learn.fit(1)
        >>> stats.means[0]        # tensor of the first layer's mean activation, one value per batch
        >>> stats.plot("activations.png")
    """

    def __init__(self, modules: Iterable[Module | torch.nn.Module], bins: int = 40,
                 hist_range: tuple[float, float] = (0.0, 10.0), zero_threshold: float = 1e-3,
                 train_only: bool = True) -> None:
        check_int("ActivationStats", "bins", bins)
        low, high = hist_range
        if not low < high:
            raise ValueError(f"ActivationStats: hist_range must be (low, high) with low < high, got {hist_range!r}")
        if not zero_threshold > 0:
            raise ValueError(f"ActivationStats: zero_threshold must be > 0, got {zero_threshold!r}")
        self.modules = list(modules)
        self.bins, self.hist_range = bins, (float(low), float(high))
        self.zero_threshold, self.train_only = zero_threshold, train_only
        self._index = {id(m): i for i, m in enumerate(self.modules)}
        self.reset()
        self.hooks = Hooks(self.modules, self._record)

    def _record(self, module, inputs: tuple, output) -> None:
        if (self.train_only and not module.training) or not isinstance(output, Tensor):
            return
        with torch.no_grad():
            x = output.detach().float()
            summary = torch.stack([x.mean(), x.std(), (x.abs() < self.zero_threshold).float().mean()])
            hist = torch.histc(x, self.bins, *self.hist_range)
            # One small tensor, one device->host copy per layer per batch.
            self._records[self._index[id(module)]].append(torch.cat([summary, hist]).cpu())

    def reset(self) -> None:
        """Forget everything recorded so far (e.g. at the start of each fit)."""
        self._records: list[list[Tensor]] = [[] for _ in self.modules]

    def remove(self) -> None:
        """Remove the hooks; what was recorded stays readable."""
        self.hooks.remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _column(self, cols: slice | int) -> list[Tensor]:
        return [torch.stack(r)[:, cols] if r else torch.empty(0) for r in self._records]

    @property
    def means(self) -> list[Tensor]:
        """Per watched module, the mean activation of each recorded batch: shape (n_batches,)."""
        return self._column(0)

    @property
    def stds(self) -> list[Tensor]:
        """Per watched module, the activation std of each recorded batch: shape (n_batches,)."""
        return self._column(1)

    @property
    def near_zero(self) -> list[Tensor]:
        """Per watched module, the share of |x| < zero_threshold per batch, in [0, 1]: shape (n_batches,)."""
        return self._column(2)

    @property
    def histograms(self) -> list[Tensor]:
        """Per watched module, the histogram counts of each batch: shape (n_batches, bins)."""
        return self._column(slice(3, None))

    def plot(self, path: str | os.PathLike) -> Path:
        """Write a PNG: mean, std and near-zero share per layer over batches, and each layer's histograms.

        The bottom row is the "colorful dimension": x is the batch, y the histogram bin, brightness
        log(1 + count). Activations piling up in the lowest bin mean many near-zero outputs.
        """
        import matplotlib.pyplot as plt  # groundup.utils.plots (imported first) selects the file-only Agg backend

        from groundup.utils.plots import save_figure

        if not any(self._records):
            raise ValueError("ActivationStats.plot: nothing recorded yet; run forward passes in training "
                             "mode first (train_only=True skips modules in eval mode)")
        names = [f"{i}: {type(m).__name__}" for i, m in enumerate(self.modules)]
        n = len(self.modules)
        fig = plt.figure(figsize=(max(12.0, 2.5 * n), 7.0), layout="constrained")
        try:
            top, bottom = fig.subfigures(2, 1)
            line_axes = top.subplots(1, 3)
            for ax, values, title in zip(line_axes, (self.means, self.stds, self.near_zero),
                                         ("mean", "std", f"share |x| < {self.zero_threshold:g}")):
                for name, v in zip(names, values):
                    ax.plot(v.numpy(), label=name)
                ax.set_title(title)
                ax.set_xlabel("batch")
            line_axes[0].legend(fontsize="small")
            for ax, name, h in zip(bottom.subplots(1, n, squeeze=False)[0], names, self.histograms):
                if h.numel():
                    low, high = self.hist_range
                    ax.imshow(h.T.log1p().numpy(), origin="lower", aspect="auto",
                              extent=(0, h.shape[0], low, high))
                ax.set_title(name, fontsize="small")
                ax.set_xlabel("batch")
                ax.set_ylabel("activation")
            return save_figure(fig, path)
        finally:
            plt.close(fig)


def layer_stats(modules: Iterable[Module | torch.nn.Module], run: Callable[[], object]) -> list[dict]:
    """What each of `modules` outputs while `run()` runs forward passes: one dict per module.

    The cheap look a diagnosis needs (a few batches, not a whole fit): per module the mean and std of
    its outputs, `zero_share` (the share of outputs exactly 0, as a ReLU's "off" units give),
    `dead_share` (the share of its channels, dim 1, that were 0 for every input seen: units that
    never fire) and `non_negative` (no output was below 0: a rectified output, where zeros mean
    "off"). Sums are kept on the device; one sync per module at the end.

    Args:
        modules: the modules to watch (e.g. a model's children).
        run: runs the forward passes (e.g. the model on a few batches, in eval mode under no_grad).

    Example:
        >>> layer_stats(model.children(), lambda: model(xb))[0]["dead_share"]
        0.0
    """
    modules = list(modules)
    acc: dict[int, dict] = {}

    def record(module, inputs, output) -> None:
        if not isinstance(output, Tensor) or output.ndim < 2 or not output.numel():
            return
        x = output.detach().float()
        dims = (0, *range(2, x.ndim))  # all but the channels
        cmax, cmin = x.amax(dim=dims), x.amin(dim=dims)  # (C,) each: a channel is dead if both are 0
        a = acc.setdefault(id(module), {"n": 0, "sum": 0.0, "sq": 0.0, "zeros": 0.0, "cmin": None, "cmax": None})
        a["n"] += x.numel()
        a["sum"] = a["sum"] + x.sum()
        a["sq"] = a["sq"] + torch.linalg.vector_norm(x) ** 2
        a["zeros"] = a["zeros"] + (x == 0).sum()
        a["cmax"] = cmax if a["cmax"] is None else torch.maximum(a["cmax"], cmax)
        a["cmin"] = cmin if a["cmin"] is None else torch.minimum(a["cmin"], cmin)

    with Hooks(modules, record):
        run()
    rows = []
    for i, m in enumerate(modules):
        a = acc.get(id(m))
        if a is None:
            continue
        n = a["n"]
        mean = float(a["sum"]) / n
        var = max(float(a["sq"]) / n - mean * mean, 0.0)
        dead = (a["cmax"] == 0) & (a["cmin"] == 0)  # (C,)
        rows.append({"layer": f"{i}: {type(m).__name__}", "mean": mean, "std": var ** 0.5,
                     "zero_share": float(a["zeros"]) / n, "dead_share": float(dead.float().mean()),
                     "channels": int(dead.numel()), "non_negative": bool(a["cmin"].min() >= 0)})
    return rows
