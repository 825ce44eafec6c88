"""Looking at data: a PNG grid of a batch's images with their labels."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from groundup.utils.plots import plt, save_figure


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
