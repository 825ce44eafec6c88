"""Image folders: the `train/<label>/*.jpg`, `val/<label>/*.jpg` layout, checked, and `ImageDataLoaders`.

This is the recipe that puts the data pieces together (walkthrough steps 1-4): find the image
files, take labels from their parent folders (`val2idx` gives the vocabulary), split by the
grandparent folder, make a `Dataset` and a `DataLoader` for each half, and measure the
normalization statistics on a sample of training images (`STATS_IMAGES` of them). The loaders
themselves (`groundup.data.loader`) know nothing about folders.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from groundup.data.augment import BatchAugment
from groundup.data.class_names import read_class_names
from groundup.data.download import registry_class_names
from groundup.data.files import get_image_files, grandparent_split, parent_label, val2idx
from groundup.data.images import DEFAULT_MAX_PIXELS, Dataset
from groundup.data.loader import DataLoader, DataLoaders
from groundup.data.preprocessing import Preprocessing
from groundup.utils.errors import GroundupWarning

__all__ = ["ImageDataLoaders", "check_image_folder", "default_num_workers"]

VALID_NAMES = ("val", "valid")
# How many training images the normalization statistics are measured on. On imagenette at 64 px one batch
# of 128 misses the whole set's channel means by up to 0.026 (95% of samples), 1024 images by 0.009. They go
# into the decode cache, so the first epoch has that many fewer to decode; from_folder took about 1 s longer.
# (Whole-set statistics did not change the walkthrough's accuracy measurably: issue 15.)
STATS_IMAGES = 1024


def check_image_folder(root: str | os.PathLike) -> Path:
    """Check the `train/<label>/*.jpg`, `val/<label>/*.jpg` layout (`valid/` works too); return the folder.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: a file instead of a folder, no train/ or val/ subfolder, a split without class
            folders, or an empty class folder; the message says which and what is expected.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root} (expected {root}/train/<label>/*.jpg and "
                                f"{root}/val/<label>/*.jpg)")
    if not root.is_dir():
        raise ValueError(f"data folder {root} is a file; it must be a folder with train/ and val/ subfolders")
    valid = next((root / n for n in VALID_NAMES if (root / n).is_dir()), None)
    missing = [n for n, p in (("train/", root / "train"), ("val/", valid)) if p is None or not p.is_dir()]
    if missing:
        raise ValueError(f"data folder {root} has no {' and no '.join(missing)} subfolder; expected "
                         f"{root}/train/<label>/*.jpg and {root}/val/<label>/*.jpg")
    for split in (root / "train", valid):
        classes = [d for d in sorted(split.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        if not classes:
            raise ValueError(f"{split} has no class folders; expected {split}/<label>/*.jpg")
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
    """`DataLoaders` for images in class folders; build them with `ImageDataLoaders.from_folder`.

    Besides `.train`, `.valid` and `.preprocessing`, `.path` is the data set's folder.
    """

    path: Path | None = None

    @classmethod
    def from_folder(cls, path: str | os.PathLike, size: int = 64, bs: int = 128,
                    num_workers: int | None = None, seed: int | None = None, valid_bs: int | None = None,
                    cache: bool = True, skip_corrupt: bool = False,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    augment: BatchAugment | bool | None = None, exif_orientation: bool = True) -> ImageDataLoaders:
        """Loaders for a folder laid out as `train/<label>/*.jpg` and `val/<label>/*.jpg` (or `valid/`).

        Finds the files, builds the vocabulary from the training labels (`val2idx`), splits by
        grandparent folder, and makes a shuffled training loader and an unshuffled validation
        loader with a larger batch (2×`bs` unless `valid_bs` is given). `.preprocessing` holds the
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
            seed: makes the shuffling and the statistics' sample reproducible.
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

        Example:
            >>> dls = ImageDataLoaders.from_folder("imagenette2-160", size=64, bs=128)
            >>> xb, yb = next(iter(dls.train))     # (128, 64, 64, 3) uint8, (128,) int64
        """
        root = check_image_folder(path)
        train_files, valid_files = grandparent_split(get_image_files(root), valid_names=VALID_NAMES)
        vocab = val2idx(parent_label(f) for f in train_files)
        if len(vocab) == 1:
            warnings.warn(f"{root / 'train'} has one class only ({next(iter(vocab))}): a classifier trained on it "
                          f"learns nothing (it predicts that class for every image, with loss 0); add a folder "
                          f"for each other class", GroundupWarning, stacklevel=2)
        if num_workers is None:
            num_workers = default_num_workers()
        default_augment = augment is True  # made below, seeded from the training loader's seed
        augment = BatchAugment(size, seed=0) if default_augment else augment or None
        train_size = size if augment is None else max(augment.stored_size, size)
        train_ds = Dataset(train_files, vocab, size=train_size, cache=cache, skip_corrupt=skip_corrupt,
                           max_pixels=max_pixels, exif_orientation=exif_orientation)
        # Without room for the training images' cache, the validation images go without one too (one warning).
        valid_ds = Dataset(valid_files, vocab, size=size, cache=cache and train_ds.cache is not None,
                           skip_corrupt=skip_corrupt, max_pixels=max_pixels, exif_orientation=exif_orientation)
        valid_ds.check_headers()  # a bad validation image would otherwise surface after a whole training epoch
        train = DataLoader(train_ds, bs, shuffle=True, num_workers=num_workers, seed=seed)
        if default_augment:
            augment.seed = train.seed
        valid = DataLoader(valid_ds, valid_bs or 2 * bs, num_workers=num_workers, seed=train.seed)
        rng = np.random.default_rng([train.seed, 2**31])
        sample = rng.choice(len(train_ds), size=min(STATS_IMAGES, len(train_ds)), replace=False)
        mean, std = image_stats(train_ds, np.sort(sample))
        names = read_class_names(root, list(vocab), known=registry_class_names())
        pre = Preprocessing(mean, std, size=size, vocab=vocab, class_names=names, exif_orientation=exif_orientation)
        dls = cls(train, valid, preprocessing=pre, augment=augment)
        dls.path = root
        return dls
