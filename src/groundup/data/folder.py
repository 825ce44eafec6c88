"""`ImageDataLoaders`: labelled images (class folders, a CSV, a function or lists) to loaders.

This is the recipe that puts the data pieces together (walkthrough steps 1-4): find the image
files, take labels from their parent folders (or a CSV: `groundup.data.csv_labels`; a function;
lists), `val2idx` gives the vocabulary, split by the grandparent folder (or at random:
`groundup.data.split`), make a `Dataset` and a `DataLoader` for each half, and measure the
normalization statistics on a sample of training images (`STATS_IMAGES` of them). The loaders
themselves (`groundup.data.loader`) know nothing about folders.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groundup.data.augment import BatchAugment
from groundup.data.class_names import read_class_names
from groundup.data.csv_labels import read_label_csv
from groundup.data.download import registry_class_names
from groundup.data.files import get_image_files, grandparent_split, parent_label, val2idx
from groundup.data.images import DEFAULT_MAX_PIXELS, Dataset
from groundup.data.loader import DataLoader, DataLoaders
from groundup.data.preprocessing import Preprocessing
from groundup.utils.errors import GroundupWarning
from groundup.data.split import DEFAULT_VALID_PCT, hash_split
from groundup.utils.checks import check_choice

log = logging.getLogger(__name__)

__all__ = ["TASKS", "ImageDataLoaders", "check_image_folder", "default_num_workers"]

TASKS = ("auto", "single", "multi")  # what the labels ask for: chosen from the data, or forced

VALID_NAMES = ("val", "valid")
# How many training images the normalization statistics are measured on. On imagenette at 64 px one batch
# of 128 misses the whole set's channel means by up to 0.026 (95% of samples), 1024 images by 0.009. They go
# into the decode cache, so the first epoch has that many fewer to decode; from_folder took about 1 s longer.
# (Whole-set statistics did not change the walkthrough's accuracy measurably: issue 15.)
STATS_IMAGES = 1024


def check_image_folder(root: str | os.PathLike) -> Path:
    """Check an image folder's layout; return the folder.

    Either `train/<label>/*.jpg` with `val/<label>/*.jpg` (`valid/` works too), or without a
    validation folder (`from_folder` then holds out a random share), or the class folders
    straight in the folder: `<label>/*.jpg`.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: a file instead of a folder, a val/ without train/, no class folders, or an
            empty class folder; the message says which and what is expected.
    """
    root = Path(root)
    expected = (f"expected {root}/train/<label>/*.jpg and {root}/val/<label>/*.jpg, or class folders "
                f"{root}/<label>/*.jpg (a random 20% of them then validates), or a CSV of labels (--labels)")
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root} ({expected})")
    if not root.is_dir():
        raise ValueError(f"data folder {root} is a file; it must be a folder of images: {expected}")
    valid = next((root / n for n in VALID_NAMES if (root / n).is_dir()), None)
    train = root / "train" if (root / "train").is_dir() else None
    if train is None and valid is not None:
        raise ValueError(f"data folder {root} has {valid.name}/ but no train/ subfolder; {expected}")
    for split in [s for s in (train, valid) if s is not None] or [root]:
        classes = [d for d in sorted(split.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        if not classes:
            where = f"{split} has no class folders" if split != root else \
                f"data folder {root} has no train/ subfolder and no class folders"
            raise ValueError(f"{where}; {expected}")
        for d in classes:
            files = get_image_files(d)
            if not files:
                raise ValueError(f"class folder {d} is empty (no image files); add images or remove it")
            nested = [f for f in files if f.parent != d]
            if nested:  # they would be labelled by their subfolder's name, and be no class of the split
                raise ValueError(f"class folder {d} has {len(nested)} images in subfolders (e.g. {nested[0]}); a class "
                                 f"folder holds its images directly ({split}/<label>/*.jpg): move them up into {d}, "
                                 f"or make each subfolder a class folder of {split}")
    return root


def default_num_workers() -> int:
    """One loading process per CPU core this process may use, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 8)


def image_stats(ds: Dataset, idxs: np.ndarray, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the images `idxs` of `ds`, in [0, 1] units: `batch_stats` of them all at once.

    Reads `chunk` images at a time and keeps running sums in float64, so memory stays that of
    `chunk` images (1024 images of 224 px as one float64 batch would take 1.2 GB).
    """
    total, squares, n = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
    for i in range(0, len(idxs), chunk):
        x = ds.get_batch(idxs[i:i + chunk])[0].double() / 255  # (chunk, size, size, 3)
        total += x.sum((0, 1, 2))
        squares += (x * x).sum((0, 1, 2))
        n += x[..., 0].numel()
    mean = total / n
    var = (squares - n * mean * mean) / (n - 1)  # unbiased, as torch.std (and so batch_stats)
    return mean.float(), var.clamp(min=0).sqrt().float()


class ImageDataLoaders(DataLoaders):
    """`DataLoaders` for labelled images: from class folders (`from_folder`), a CSV of labels
    (`from_csv`), a labelling function (`from_func`) or lists (`from_lists`).

    All four end in the same place (`_from_items`): one vocabulary, the same datasets, decode
    cache, loaders and `Preprocessing`. Besides `.train`, `.valid` and `.preprocessing`, `.path`
    is the data set's folder (None for lists of files without one).

    Labels are single (one class per image) or, where any image has several, multi-label: each
    image's target is then a multi-hot row (C,) of 0.0/1.0 and `.preprocessing.multi_label` is
    True. `task="single"` or `task="multi"` forces either.
    """

    path: Path | None = None

    @classmethod
    def from_folder(cls, path: str | os.PathLike, size: int = 64, bs: int = 128,
                    num_workers: int | None = None, seed: int | None = None, valid_bs: int | None = None,
                    cache: bool = True, skip_corrupt: bool = False,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    augment: BatchAugment | bool | None = None, valid_pct: float | None = None,
                    exif_orientation: bool = True) -> ImageDataLoaders:
        """Loaders for a folder laid out as `train/<label>/*.jpg` and `val/<label>/*.jpg` (or `valid/`).

        Finds the files, builds the vocabulary from the labels (`val2idx`), splits by grandparent
        folder, and makes a shuffled training loader and an unshuffled validation
        loader with a larger batch (2×`bs` unless `valid_bs` is given). Without a `val/` folder
        (only `train/<label>/`, or the class folders straight in `path`), a random `valid_pct` of
        the images (default 0.2, said in a log line) validates: see `groundup.data.split`.
        `.preprocessing` holds the
        image size, the vocabulary, the class names and the per-channel mean and std of the
        training images (of a random sample of `STATS_IMAGES` of them in a larger set). Class
        names come from an optional `classes.json` or `labels.txt` in `path` (see
        `groundup.data.class_names`), else from the registry for Imagenette and Imagewoof
        folders, else they are the folder names. The validation images' headers are read here
        (`Dataset.check_headers`), so an unreadable one stops the run before training, not after a
        whole epoch.

        Args:
            path: the data set folder.
            size: images are squashed to `size`×`size`.
            bs: training batch size.
            num_workers: worker processes per loader; None uses every CPU core (at most 8).
            seed: makes the shuffling, the statistics' sample and a random split reproducible.
            cache: keep decoded images in a decode cache under `GROUNDUP_HOME`.
            skip_corrupt: skip undecodable images with a warning instead of failing.
            max_pixels: refuse images with more pixels than this, before decoding them (a
                decompression bomb; default Pillow's limit, about 89 million); see `open_image`.
            augment: random resized crops and flips of the training batches (`BatchAugment`; True:
                one of `size` with the default ranges, seeded from `seed`). The training images are
                then decoded and cached at its `stored_size` (1.25× its size), the validation images
                at `size`. Its size may be smaller than `size`: training on smaller crops is faster,
                and a model trained on random crops can do well on slightly larger whole images
                (Touvron et al. 2019, "Fixing the train-test resolution discrepancy"; on Imagenette
                at 64 px, 56-px crops did not pay). Kept as `.augment`; the Learner applies it.
            exif_orientation: turn each photo as its EXIF orientation tag says (see `groundup.data.images`);
                recorded in `.preprocessing`, so prediction decodes alike.
            valid_pct: the share held out for validation when the folder has no `val/` (an error
                when it has one).

        Example:
            >>> dls = ImageDataLoaders.from_folder("imagenette2-160", size=64, bs=128)
            >>> xb, yb = next(iter(dls.train))     # (128, 64, 64, 3) uint8, (128,) int64
        """
        root = check_image_folder(path)
        files = get_image_files(root)
        is_valid = None
        if (root / "train").is_dir():
            train_files, valid_files = grandparent_split(files, valid_names=VALID_NAMES)
            files = train_files + valid_files
            if valid_files:
                is_valid = [False] * len(train_files) + [True] * len(valid_files)
        else:
            files = [f for f in files if f.parent != root]  # images outside the class folders have no label
        return cls._from_items(files, [parent_label(f) for f in files], is_valid, root=root, valid_pct=valid_pct,
                               seed=seed, size=size, bs=bs, num_workers=num_workers, valid_bs=valid_bs,
                               cache=cache, skip_corrupt=skip_corrupt, max_pixels=max_pixels, augment=augment,
                               task="single", exif_orientation=exif_orientation)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, csv: str | os.PathLike = "labels.csv", fn_col: int | str = 0,
                 label_col: int | str = 1, valid_col: int | str | None = None, valid_pct: float | None = None,
                 seed: int | None = None, task: str = "auto", threshold: float = 0.5,
                 **kwargs: Any) -> ImageDataLoaders:
        """Loaders for the images a CSV file lists with their labels (see `groundup.data.csv_labels`).

        Args:
            path: the data folder; the CSV's file names are relative to it.
            csv: the CSV file, relative to `path` (or an absolute path). Its first line names the columns.
            fn_col, label_col: the file-name and label columns, by number (0 is the first) or name.
                A label cell with several space-separated tags (`dog car`) makes the set multi-label
                (unless `task="single"`, which takes each cell whole).
            valid_col: a column that is 1/true for validation images and 0/false for training ones;
                without one, a random `valid_pct` (default 0.2) of the images validates.
            valid_pct, seed: the random split (see `groundup.data.split`); `seed` also seeds the loaders.
            task: "auto" (multi-label where any row has several tags), "single" or "multi".
            threshold: multi-label: the probability from which a tag is predicted.
            **kwargs: as `from_folder`: size, bs, num_workers, valid_bs, cache, skip_corrupt
                (which also skips bad CSV rows, counted and logged), max_pixels, augment.

        Example:
            >>> dls = ImageDataLoaders.from_csv("planet", "labels.csv", valid_pct=0.2, seed=42)
        """
        check_choice("task", task, TASKS)
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder not found: {root} (from_csv reads the CSV's file names relative "
                                    f"to it)")
        table = read_label_csv(root / csv, root, fn_col, label_col, valid_col,
                               skip_corrupt=kwargs.get("skip_corrupt", False))
        labels = table.labels if task == "single" else [cell.split() for cell in table.labels]
        return cls._from_items(table.files, labels, table.is_valid, root=root, names=table.names,
                               valid_pct=valid_pct, seed=seed, task=task, threshold=threshold, **kwargs)

    @classmethod
    def from_func(cls, files: Sequence[str | os.PathLike], label_func: Callable[[Path], str | Sequence[str]],
                  path: str | os.PathLike | None = None, valid_pct: float | None = None, seed: int | None = None,
                  task: str = "auto", threshold: float = 0.5, **kwargs: Any) -> ImageDataLoaders:
        """Loaders for `files` labelled by `label_func(file)`: a label, or a list of tags (multi-label).

        A random `valid_pct` (default 0.2) of the files validates; the other arguments are `from_csv`'s.

        Example:
            >>> files = get_image_files("pets/images")
            >>> dls = ImageDataLoaders.from_func(files, lambda f: f.name.rsplit("_", 1)[0], path="pets")
        """
        files = [Path(f) for f in files]
        return cls.from_lists(files, [label_func(f) for f in files], path=path, valid_pct=valid_pct, seed=seed,
                              task=task, threshold=threshold, **kwargs)

    @classmethod
    def from_lists(cls, files: Sequence[str | os.PathLike], labels: Sequence[str | Sequence[str]],
                   path: str | os.PathLike | None = None, valid_pct: float | None = None, seed: int | None = None,
                   task: str = "auto", threshold: float = 0.5, **kwargs: Any) -> ImageDataLoaders:
        """Loaders for `files` and their `labels` (a label each, or a list of tags each: multi-label).

        `path` (optional) is the data folder: file names relative to it are what the random split
        hashes (so it does not depend on where the folder is), and it may hold `classes.json`.
        The other arguments are `from_csv`'s.

        Example:
            >>> dls = ImageDataLoaders.from_lists(["a.jpg", "b.jpg", ...], [["dog", "car"], ["cat"], ...])
        """
        if len(files) != len(labels):
            raise ValueError(f"from_lists: {len(files)} files but {len(labels)} labels; give one label (or list "
                             f"of tags) per file")
        root = Path(path) if path is not None else None
        files = [Path(f) if root is None else root / f for f in files]
        missing = next((f for f in files if not f.is_file()), None)
        if missing is not None:
            raise FileNotFoundError(f"image file not found: {missing}")
        names = [_split_name(f, root) for f in files]
        return cls._from_items(files, list(labels), None, root=root, names=names, valid_pct=valid_pct, seed=seed,
                               task=task, threshold=threshold, **kwargs)

    @classmethod
    def _from_items(cls, files: Sequence[Path], labels: Sequence[str | Sequence[str]], is_valid: Sequence[bool] | None,
                    root: Path | None, names: Sequence[str] | None = None, valid_pct: float | None = None,
                    seed: int | None = None, task: str = "auto", threshold: float = 0.5, size: int = 64,
                    bs: int = 128, num_workers: int | None = None, valid_bs: int | None = None, cache: bool = True,
                    skip_corrupt: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    augment: BatchAugment | bool | None = None, exif_orientation: bool = True) -> ImageDataLoaders:
        """The one road every `from_*` ends in: labels to targets, the split, datasets, loaders, statistics."""
        check_choice("task", task, TASKS)
        tags = [[lbl] if isinstance(lbl, str) else [str(t) for t in lbl] for lbl in labels]
        multi = task == "multi" or (task == "auto" and any(len(t) > 1 for t in tags))
        if not multi:
            bad = next((i for i, t in enumerate(tags) if len(t) != 1), None)
            if bad is not None:
                raise ValueError(f"{files[bad]} has {len(tags[bad])} labels {tags[bad]}, but task='single' takes one "
                                 f"label per image; give one, or use task='multi'")
        vocab = val2idx(t for ts in tags for t in ts)
        if multi:
            targets = np.zeros((len(files), len(vocab)), dtype=np.float32)  # multi-hot: (N, C)
            for i, ts in enumerate(tags):
                targets[i, [vocab[t] for t in ts]] = 1.0
        else:
            targets = np.array([vocab[t[0]] for t in tags], dtype=np.int64)  # (N,)
        where = root if root is not None else "the data"
        if is_valid is None:
            valid_pct = DEFAULT_VALID_PCT if valid_pct is None else valid_pct
            split_seed = 0 if seed is None else seed
            names = names if names is not None else [_split_name(f, root) for f in files]
            is_valid = hash_split(names, valid_pct, split_seed)
            log.info("%s has no validation part: a random %g%% of its %d images validates (valid_pct=%g, "
                     "seed %d; each file keeps its side when files are added)", where, 100 * valid_pct,
                     len(files), valid_pct, split_seed)
        elif valid_pct is not None:
            raise ValueError(f"valid_pct={valid_pct} was given, but {where} has its own validation part (a val/ "
                             f"folder or a validation column); leave valid_pct out, or the validation part")
        is_valid = np.asarray(is_valid, dtype=bool)
        if is_valid.all() or not is_valid.any():
            side = "training" if is_valid.all() else "validation"
            raise ValueError(f"{where}: no {side} images among its {len(files)} (the split put every image on "
                             f"one side); add images, or change valid_pct or the validation column")
        train_idx, valid_idx = np.flatnonzero(~is_valid), np.flatnonzero(is_valid)
        train_files, valid_files = [files[i] for i in train_idx], [files[i] for i in valid_idx]
        train_labels = {t for i in train_idx for t in tags[i]}
        if len(train_labels) == 1:
            folders = root is not None and (root / "train").is_dir()
            warnings.warn(f"{root / 'train' if folders else where} has one class only ({next(iter(train_labels))}): "
                          f"a classifier trained on it learns nothing (it predicts that class for every image, with "
                          f"loss 0); add {'a folder' if folders else 'images'} for each other class",
                          GroundupWarning, stacklevel=3)
        if num_workers is None:
            num_workers = default_num_workers()
        default_augment = augment is True  # made below, seeded from the training loader's seed
        augment = BatchAugment(size, seed=0) if default_augment else augment or None
        train_size = size if augment is None else max(augment.stored_size, size)
        train_ds = Dataset(train_files, vocab, size=train_size, cache=cache, skip_corrupt=skip_corrupt,
                           max_pixels=max_pixels, targets=targets[train_idx],
                           exif_orientation=exif_orientation)
        # Without room for the training images' cache, the validation images go without one too (one warning).
        valid_ds = Dataset(valid_files, vocab, size=size, cache=cache and train_ds.cache is not None,
                           skip_corrupt=skip_corrupt, max_pixels=max_pixels, targets=targets[valid_idx],
                           exif_orientation=exif_orientation)
        valid_ds.check_headers()  # a bad validation image would otherwise surface after a whole training epoch
        train = DataLoader(train_ds, bs, shuffle=True, num_workers=num_workers, seed=seed)
        if default_augment:
            augment.seed = train.seed
        valid = DataLoader(valid_ds, valid_bs or 2 * bs, num_workers=num_workers, seed=train.seed)
        rng = np.random.default_rng([train.seed, 2**31])
        sample = rng.choice(len(train_ds), size=min(STATS_IMAGES, len(train_ds)), replace=False)
        mean, std = image_stats(train_ds, np.sort(sample))
        class_names = read_class_names(root, list(vocab), known=registry_class_names())
        pre = Preprocessing(mean, std, size=size, vocab=vocab, class_names=class_names, multi_label=multi,
                            threshold=threshold, exif_orientation=exif_orientation)
        dls = cls(train, valid, preprocessing=pre, augment=augment)
        dls.path = root
        return dls


def _split_name(file: Path, root: Path | None) -> str:
    """The name the random split hashes: the path relative to the data folder when it is inside it (the same on
    every machine), else the path as given."""
    if root is not None:
        try:
            return file.relative_to(root).as_posix()
        except ValueError:
            pass
    return file.as_posix()
