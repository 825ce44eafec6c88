"""Small matplotlib helpers that write PNG files (the Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: plots are files, never windows
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from groundup.utils.atomic import atomic_write


@contextmanager
def png_axes(path: str | os.PathLike, title: str = "", xlabel: str = "", ylabel: str = "",
             figsize: tuple[float, float] = (6, 4)) -> Iterator[Axes]:
    """Yield one matplotlib `Axes`; on leaving the block, write the figure to `path` as a PNG.

    The file is written atomically (a temporary file renamed into place), so a reader never
    sees a half-written image.

    Example:
        >>> with png_axes("loss.png", xlabel="batch", ylabel="loss") as ax:
        ...     ax.plot([3, 2, 1])
    """
    fig, ax = plt.subplots(figsize=figsize)
    try:
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        yield ax
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write `fig` to `path` as a PNG, atomically (see `groundup.utils.atomic`); return the path."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    return Path(path)
