"""Build what a run trains: find the data, make the loaders, the model and the Learner.

Shared by `groundup train`, `groundup lr-find` and `groundup evaluate`:

    resolve_data(data)      the shipped set (None or "imagenette-mini"), a registry name (downloaded
                            once) or a folder -> the checked image folder
                            (with `cfg.labels`, a CSV of labels says which images and labels instead)
    build_learner(cfg)      ImageDataLoaders, the model from `cfg.arch`, and a Learner with
                            SetupLearnerCB, DistributedTraining and (with `cfg.amp`) MixedPrecision
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch

from groundup.callbacks.core import Callback
from groundup.callbacks.distributed import DistributedTraining
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.setup import SetupLearnerCB
from groundup.data.augment import BatchAugment
from groundup.data.download import DATASETS, SHIPPED_DATASET, DownloadError, shipped_dataset, untar_data
from groundup.data.folder import ImageDataLoaders, check_image_folder
from groundup.learner import Learner
from groundup.losses import binary_cross_entropy_with_logits, cross_entropy
from groundup.nn.models import arch_info, get_arch
from groundup.run.config import TrainConfig, opt_func_for
from groundup.utils.devices import resolve_device
from groundup.utils.rng import seed_everything, set_deterministic

__all__ = ["augment_for", "build_learner", "find_data", "loss_for", "resolve_data", "shipped_dataset"]


def find_data(data: str | None) -> Path:
    """The folder `--data` names: the shipped data set (None or "imagenette-mini"), a registry name
    (downloaded once), or a path.

    Raises FileNotFoundError for a path that does not exist; what is inside is not checked.
    """
    if data is None or data == SHIPPED_DATASET:
        root = shipped_dataset()
    elif data in DATASETS:
        try:
            root = untar_data(data)
        except DownloadError as e:
            raise e.with_offline_hint("set GROUNDUP_HOME to where it is cached, or pass the extracted folder "
                                      "as --data FOLDER") from e
    elif "://" in data:  # Path() would squash "http://host" into "http:/host"
        raise ValueError(f"--data {data} is a URL; --data takes a folder or a registry name. Download and extract "
                         f"it first (in Python: untar_data({data!r}), which returns the folder), then pass that "
                         f"folder as --data")
    else:
        root = Path(data).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data folder not found: {root} (--data takes a folder with train/ and val/ "
                                    f"subfolders, or a data set's name: {SHIPPED_DATASET} (shipped), {', '.join(sorted(DATASETS))})")
    return root


def resolve_data(data: str | None) -> Path:
    """The image folder for a run's `--data` (see `find_data`), checked: it has train/ and val/ with images."""
    return check_image_folder(find_data(data))


def loss_for(multi_label: bool, label_smoothing: float = 0.0) -> Callable:
    """The loss of a run's task: cross-entropy, or for multi-label `binary_cross_entropy_with_logits`
    (each with `label_smoothing` when it is not 0)."""
    loss = binary_cross_entropy_with_logits if multi_label else cross_entropy
    return functools.partial(loss, label_smoothing=label_smoothing) if label_smoothing else loss


def augment_for(cfg: TrainConfig) -> BatchAugment | None:
    """The training batches' augmentation a run's settings ask for (`--augment`, `--crop`, `--crop-scale`,
    `--train-size`), seeded by its seed; None without `--augment`."""
    if not cfg.augment:
        return None
    return BatchAugment(cfg.train_size or cfg.size, scale=(cfg.crop_scale, 1.0), crop=cfg.crop, seed=cfg.seed)


def build_learner(cfg: TrainConfig, device: str | torch.device | None = None) -> Learner:
    """The Learner a run trains: its loaders, model (seeded by `cfg.seed`), loss, optimizer and device callbacks.

    The learner's callbacks are `SetupLearnerCB` (device, normalization), `DistributedTraining` (a no-op
    unless started by torchrun) and, with `cfg.amp`, `MixedPrecision`. `learn.lr` is `cfg.lr`
    (1e-3 until the LR finder replaces it when `cfg.lr == "auto"`). Call `learn.dls.close()` when done.
    The device is `device` if given, else `cfg.device` (checked first: a device this machine lacks
    is a ValueError listing those it has).
    """
    device = resolve_device(cfg.device) if device is None else device
    augment = augment_for(cfg)
    loading = dict(size=cfg.size, bs=cfg.bs, valid_bs=cfg.valid_bs, num_workers=cfg.num_workers, seed=cfg.seed,
                   skip_corrupt=cfg.skip_corrupt, augment=augment, valid_pct=cfg.valid_pct,
                   exif_orientation=cfg.exif_orientation)
    if cfg.labels is not None:
        dls = ImageDataLoaders.from_csv(find_data(cfg.data), cfg.labels, valid_col=cfg.valid_col, task=cfg.task,
                                        threshold=cfg.threshold, **loading)
    else:
        if cfg.task == "multi":
            raise ValueError("--task multi needs labels with several tags per image: give them in a CSV with "
                             "--labels FILE (class folders hold one label per image)")
        dls = ImageDataLoaders.from_folder(resolve_data(cfg.data), **loading)
    info = arch_info(cfg.arch)
    if info is not None and info.stats is not None:  # published weights expect their own statistics (ImageNet's)
        dls.preprocessing = dls.preprocessing.with_stats(*info.stats)
    if cfg.compile and len(dls.train.dataset) >= cfg.bs:
        dls.train.drop_last = True  # a last, smaller batch would make torch.compile compile the model again
    if cfg.deterministic:
        set_deterministic(True)
    seed_everything(cfg.seed)
    model = get_arch(cfg.arch, n_classes=len(dls.preprocessing.vocab))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    cbs: list[Callback] = [SetupLearnerCB(device), DistributedTraining()]
    if cfg.amp:
        cbs.append(MixedPrecision())
    loss = loss_for(dls.preprocessing.multi_label, cfg.label_smoothing)
    learn = Learner(model, dls, loss, lr=1e-3 if cfg.lr == "auto" else cfg.lr,
                    opt_func=opt_func_for(cfg.opt, wd=cfg.wd, momentum=cfg.momentum, wd_norms=cfg.wd_norms,
                                          nesterov=cfg.nesterov),
                    cbs=cbs, progress=False)  # run_fit adds the bar itself, unless --quiet
    return learn.compile() if cfg.compile else learn
