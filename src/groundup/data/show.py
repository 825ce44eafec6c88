"""Looking at data: a PNG grid of a batch's images with their labels, and the grid itself (`image_grid`),
which `Learner.show_results` and `Interpretation.plot_top_losses` draw with too."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from groundup.utils.plots import plt, save_figure

__all__ = ["display_images", "image_grid", "show_batch"]


def image_grid(images: Sequence, captions: Sequence[str], colors: Sequence[str] | None = None,
               title: str | None = None, ncols: int | None = None):
    """A grid of images, each titled with its caption (in its colour), as an open matplotlib `Figure`.

    Args:
        images: each (H, W, 3) or (H, W): uint8, or float in [0, 1] (a tensor, an array or a PIL image).
        captions: one per image (may hold line breaks).
        colors: the colour of each caption (default black), e.g. "firebrick" for a wrong prediction.
        title: above the grid.
        ncols: grid columns (default: about square).

    Pass the figure to `groundup.utils.plots.finish_figure(fig, path)` to lay it out, close it in pyplot
    and (with a path) write it; a notebook shows the returned figure inline.
    """
    if not len(images):
        raise ValueError("image_grid: no images to show")
    ncols = ncols or math.ceil(math.sqrt(len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.9 * nrows), squeeze=False)
    try:
        for ax in axes.flat:
            ax.axis("off")
        for k, (ax, pixels, caption) in enumerate(zip(axes.flat, images, captions)):
            pixels = pixels.detach().cpu().numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels)
            if pixels.dtype != np.uint8:
                pixels = pixels.astype(np.float32).clip(0, 1)
            if pixels.ndim == 3 and pixels.shape[-1] == 1:
                pixels = pixels[..., 0]
            ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None)
            ax.set_title(caption, fontsize=8, color=colors[k] if colors is not None else "black")
        if title:
            fig.suptitle(title, fontsize=10)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def display_images(xb: torch.Tensor, preprocessing=None) -> torch.Tensor:
    """A batch as images to look at, (N, H, W, C): uint8 as the loaders yield it, or float in [0, 1].

    A uint8 or float (N, H, W, C) batch is taken as it is; a float (N, C, H, W) batch (a model input) is
    un-normalized with `preprocessing`'s mean and std when it has them, and moved to channels last.
    """
    if xb.ndim != 4:
        raise ValueError(f"expected a batch of images, (N, H, W, C) or (N, C, H, W), got shape {tuple(xb.shape)}")
    xb = xb.detach().cpu()
    if xb.dtype == torch.uint8 or xb.shape[-1] in (1, 3, 4):
        return xb if xb.dtype == torch.uint8 else xb.float().clamp(0, 1)
    x = xb.float()  # (N, C, H, W)
    if preprocessing is not None and getattr(preprocessing, "mean", None) is not None:
        mean, std = (torch.as_tensor(v, dtype=torch.float32).reshape(1, -1, 1, 1) for v in preprocessing.stats)
        x = x * std + mean  # the statistics are in [0, 1] units (`Preprocessing`)
    return x.permute(0, 2, 3, 1).clamp(0, 1)  # (N, H, W, C)


def show_batch(batch, path: str | os.PathLike = "batch.png", vocab: dict | list | None = None,
               max_n: int = 16, ncols: int | None = None) -> Path:
    """Write the first `max_n` images of a batch to a PNG grid titled with their labels.

    Args:
        batch: `(xb, yb)`: `xb` of shape (N, H, W, C) as uint8 (as the DataLoader yields it) or float
            in [0, 1], `yb` label indices. Or loaders to take the first batch from: `DataLoaders` (its
            training loader, augmented as in training when it has an `augment`, titled with its
            class names) or a `DataLoader` (titled with its data
            set's vocabulary).
        path: where to write the PNG.
        vocab: the names of the label indices, `{label: index}` or a list; default: the loaders'
            class names (or vocabulary) when `batch` is loaders, else the indices themselves.
        max_n: how many images to show.
        ncols: grid columns (default: about square).

    Example:
        >>> show_batch(dls, "batch.png")                  # or dls.show_batch("batch.png")
        >>> show_batch(next(iter(dls.valid)), "valid.png", vocab=dls.preprocessing.class_names)
    """
    if hasattr(batch, "train") and hasattr(batch, "valid"):  # DataLoaders
        pre = getattr(batch, "preprocessing", None)
        if vocab is None:
            names = pre.class_names if pre is not None else None
            vocab = names or getattr(batch, "vocab", None)
        augment = getattr(batch, "augment", None)
        batch = next(iter(batch.train))
        if augment is not None:  # show what the model is trained on: the first epoch's first batch
            batch = (augment(batch[0], epoch=0, batch=0), *batch[1:])
    elif hasattr(batch, "dataset") and not isinstance(batch, (tuple, list)):  # one DataLoader
        if vocab is None:
            vocab = getattr(batch.dataset, "vocab", None)
        batch = next(iter(batch))
    xb, yb = batch
    if xb.ndim != 4 or xb.shape[-1] not in (1, 3, 4):
        raise ValueError(f"show_batch expects images as (N, H, W, C), got shape {tuple(xb.shape)}")
    names = list(vocab) if isinstance(vocab, dict) else vocab
    n = min(max_n, len(xb))
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2 * ncols, 2.2 * nrows), squeeze=False)
    try:
        for k, ax in enumerate(axes.flat):
            ax.axis("off")
            if k >= n:
                continue
            img = xb[k].detach().cpu()
            img = img if img.dtype == torch.uint8 else img.float().clamp(0, 1)
            ax.imshow(img.squeeze(-1).numpy(), cmap="gray" if img.shape[-1] == 1 else None)
            y = int(yb[k])
            ax.set_title(str(names[y]) if names is not None else str(y), fontsize=9)
        fig.tight_layout()
        return save_figure(fig, path)
    finally:
        plt.close(fig)
