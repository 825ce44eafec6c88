"""Small matplotlib helpers: figures that a notebook shows inline, written to PNG files when a path is given.

Outside a Jupyter kernel the Agg backend is used (no display needed, never a window); inside one,
the kernel's inline backend is left alone, so a returned `Figure` shows under the cell.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a notebook keeps its inline backend; elsewhere plots are files, never windows
    matplotlib.use("Agg")  # before pyplot is imported anywhere
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


def figure_axes(title: str = "", xlabel: str = "", ylabel: str = "", figsize: tuple[float, float] = (6, 4)):
    """A new `(Figure, Axes)` with its title and axis labels, for `finish_figure`."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def finish_figure(fig, path: str | os.PathLike | None = None):
    """Lay `fig` out, write it to `path` as a PNG when a path is given, and return it.

    The figure is closed in pyplot (no second copy shows in a notebook, none piles up in a loop); a
    notebook still shows the returned `Figure` inline, and `fig.savefig(...)` still works.
    """
    try:
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
    finally:
        plt.close(fig)
    return fig


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write `fig` to `path` as a PNG, atomically (see `groundup.utils.atomic`); return the path."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    return Path(path)
