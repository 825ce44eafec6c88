"""The training curves of a run in one picture: the loss of every training batch, and beside it the
validation loss and accuracy of every epoch, with the epoch boundaries and the best epoch marked.

Every curve shares one x axis, the training batch, so an epoch's validation numbers sit at the
batch where that epoch ended, right next to the training losses that led to them.

The faint curve is every batch's loss; the solid one over it is their centred moving average over
half an epoch's batches (`centred_mean`): centred, it does not lag behind the batches as an
exponential average does (with beta 0.98, about 50 batches: several epochs of a small data set).
The epochs are named along the top, every one up to 10 epochs and every k-th beyond, so the labels
stay readable at 100 epochs and more.

Example:
    >>> plot_training(recorder.losses, learn.history, "losses.png")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from groundup.utils.plots import plt, save_figure

__all__ = ["BOUNDARY_COLOR", "centred_mean", "epoch_ends", "plot_training", "training_figure"]

MAX_EPOCH_LABELS = 10  # epochs named along the top at most: beyond, every k-th

BOUNDARY_COLOR = "#9467bd"  # the dashed epoch boundaries (matplotlib's C4, unused by the curves)


def epoch_ends(n_batches: int, n_epochs: int) -> list[int]:
    """How many training batches had run at the end of each of `n_epochs` epochs of `n_batches` in all."""
    if n_epochs <= 0:
        return []
    return [round(n_batches * (k + 1) / n_epochs) for k in range(n_epochs)]


def centred_mean(values: Sequence[float], window: int) -> list[float]:
    """The mean of the `window` values centred on each one (fewer at the ends): a smoothing without lag."""
    if window < 1:
        raise ValueError(f"centred_mean: window must be >= 1, got {window}")
    half, n = window // 2, len(values)
    sums = [0.0]
    for v in values:
        sums.append(sums[-1] + v)
    return [(sums[min(n, i + half + 1)] - sums[max(0, i - half)]) / (min(n, i + half + 1) - max(0, i - half))
            for i in range(n)]


def training_figure(losses: Sequence[float], history: Sequence[Mapping[str, Any]],
                    smooth: Sequence[float] | None = None, best_epoch: int | None = None,
                    best_rule: str = "lowest valid_loss"):
    """The figure `plot_training` writes (a matplotlib `Figure`)."""
    fig, ax = plt.subplots(figsize=(9, 5.2))
    # Batch b (1-based) is drawn at x = b; an epoch's boundary (its validation) half a batch after its last.
    bounds = [end + 0.5 for end in epoch_ends(len(losses), len(history))]
    handles = []
    if losses:
        handles += ax.plot(range(1, len(losses) + 1), losses, color="C0", alpha=0.25, linewidth=0.8,
                           label="train loss (batch)")
        if smooth is None:
            window = max(1, len(losses) // max(1, len(history)) // 2) | 1  # half an epoch, odd: centred
            smooth, what = centred_mean(losses, window), f"train loss (mean of {window} batches around it)"
        else:
            what = "train loss (smoothed)"
        if smooth:
            handles += ax.plot(range(1, len(smooth) + 1), smooth, color="C0", label=what)
    valid = [(x, row["valid_loss"]) for x, row in zip(bounds, history) if row.get("valid_loss") is not None]
    if valid:
        handles += ax.plot(*zip(*valid), "o-", color="C1", label="valid loss (epoch)")
    for x in bounds[:-1]:
        ax.axvline(x, color=BOUNDARY_COLOR, linestyle="--", linewidth=1)
    if history and bounds:  # name the epochs along the top: every one up to 10, else every k-th
        step = -(-len(history) // MAX_EPOCH_LABELS)
        centres = [(start + end) / 2 for start, end in zip([0.5, *bounds[:-1]], bounds)]
        top = ax.secondary_xaxis("top")
        top.set_xticks(centres[::step], [str(row.get("epoch", "")) for row in history[::step]])
        top.tick_params(labelsize=7, colors=BOUNDARY_COLOR, length=0)
        top.set_xlabel("epoch", fontsize=7, color=BOUNDARY_COLOR)
    acc = [(x, row["valid_acc"]) for x, row in zip(bounds, history) if row.get("valid_acc") is not None]
    if acc:
        ax2 = ax.twinx()
        handles += ax2.plot(*zip(*acc), "s-", color="C2", label="valid accuracy (epoch)")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("accuracy")
    if best_epoch is not None:
        k = next((i for i, row in enumerate(history) if row.get("epoch") == best_epoch), None)
        if k is not None and k < len(bounds):
            handles.append(ax.axvline(bounds[k], color="C3", linestyle=":", linewidth=1.5,
                                      label=f"best epoch {best_epoch} ({best_rule}): best.pt"))
    ax.set_xlabel("training batch (dashed lines: epoch boundaries)")
    ax.set_ylabel("loss")
    ax.set_title("training loss per batch, validation loss and accuracy per epoch", pad=16)
    if handles:  # below the axes, where it hides no curve
        ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3,
                  frameon=False)
    fig.tight_layout()
    return fig


def plot_training(losses: Sequence[float], history: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                  smooth: Sequence[float] | None = None, best_epoch: int | None = None,
                  best_rule: str = "lowest valid_loss") -> Path:
    """Write the training curves to a PNG and return its path.

    Args:
        losses: the loss of every training batch (`Recorder.losses`), all epochs in order.
        history: one row per epoch (`learn.history`), with `valid_loss`/`valid_acc` where measured.
        path: the PNG to write.
        smooth: a smoothed version of `losses` to draw over it; default their centred mean over half
            an epoch's batches (`centred_mean`), which does not lag.
        best_epoch: the epoch to mark as best (the one `best.pt` holds); `best_rule`: how it was chosen.
    """
    fig = training_figure(losses, history, smooth, best_epoch, best_rule)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
