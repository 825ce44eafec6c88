"""Finding image files, labelling them from folder names, and splitting them (walkthrough step 1)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def get_image_files(path: str | os.PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """All image files under `path`, recursively, sorted so the order is the same on every machine.

    Extensions are matched case-insensitively (`.JPEG` counts as `.jpeg`); hidden files and
    folders (names starting with '.') are skipped.

    Example:
        >>> files = get_image_files("imagenette2-160")   # [.../train/n01440764/n01440764_10026.JPEG, ...]
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"expected a folder of images, got a file: {root}")
    exts = {e.lower() for e in extensions}
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, n) for n in names
                  if not n.startswith(".") and os.path.splitext(n)[1].lower() in exts]
    return sorted(found)


def parent_label(path: str | os.PathLike) -> str:
    """The label of an image: the name of the folder it sits in (`train/n01440764/x.JPEG` → `n01440764`)."""
    return Path(path).parent.name


def val2idx(values: Iterable) -> dict:
    """Map each distinct value to an index, in sorted order: `val2idx(["b", "a", "b"]) == {"a": 0, "b": 1}`."""
    return {v: i for i, v in enumerate(sorted(set(values)))}


def grandparent_split(files: Sequence[Path], train_name: str = "train",
                      valid_names: Sequence[str] = ("val", "valid")) -> tuple[list[Path], list[Path]]:
    """Split files by the name of their grandparent folder: `train/` vs `val/` (or `valid/`).

    Files under any other grandparent are left out of both lists.

    Returns:
        (train_files, valid_files), each in the order given.
    """
    train = [f for f in files if Path(f).parent.parent.name == train_name]
    valid = [f for f in files if Path(f).parent.parent.name in valid_names]
    return train, valid


def label_files(files: Sequence[Path], vocab: dict[str, int],
                label_func: Callable[[Path], str] = parent_label) -> list[int]:
    """Label index of each file; a label missing from `vocab` is an error naming the file."""
    labels = []
    for f in files:
        lbl = label_func(f)
        if lbl not in vocab:
            raise ValueError(f"label {lbl!r} of {f} is not in the vocabulary "
                             f"({len(vocab)} labels: {', '.join(map(str, list(vocab)[:10]))}...)")
        labels.append(vocab[lbl])
    return labels
