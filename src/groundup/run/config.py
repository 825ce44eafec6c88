"""`TrainConfig`: the settings of a training run, as `groundup train` takes them.

A run is defined by its config alone (plus the data): it is stored in every checkpoint as
`config`, so `groundup train --resume` continues with the same settings. The command line
(`groundup.commands.train`) fills one from its flags; `groundup.run.build_learner` turns one into
a Learner. As a file it is TOML, one `key = value` line per setting (`to_toml`, `from_toml`;
`groundup train --config run.toml`, `--print-config`, and `config.toml` in every run folder).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from groundup.data.augment import CROPS
from groundup.data.folder import TASKS
from groundup.data.images import check_size
from groundup.nn.models import ARCHS
from groundup.optim import SGD, Adam, decay_groups
from groundup.utils.checks import check_choice, check_int, check_number
from groundup.utils.devices import check_device_name

__all__ = ["ANNEALS", "DEFAULT_LR", "DEFAULT_MOMENTUM", "DEFAULT_WD", "MONITORS", "OPTIMIZERS", "RESUME_MAY_CHANGE",
           "SCHEDULES", "TrainConfig", "auto_lr_rule", "opt_func_for", "read_toml_settings"]

SCHEDULES = ("one-cycle", "constant")
ANNEALS = ("linear", "cos")
OPTIMIZERS = ("adam", "sgd")
DEFAULT_LR = 1e-2  # --lr when not given (the peak of the one-cycle schedule)
DEFAULT_WD = {"adam": 1e-2, "sgd": 1e-4}  # weight decay when --wd is not given (AdamW's is decoupled)
DEFAULT_MOMENTUM = 0.9  # SGD's momentum and Adam's beta1 when --momentum is not given
MONITORS = ("valid_loss", "valid_acc")  # what --monitor may judge a run by (best.pt, early stopping)
# Settings a resumed run may change: where the data is, how it is loaded. Everything else would
# make the resumed run a different run (and no longer equal to an uninterrupted one).
RESUME_MAY_CHANGE = ("data", "num_workers", "device", "tensorboard", "skip_corrupt")
MAX_SEED = 2**32 - 1


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint as `config`, so `--resume` can restore it).

    Args:
        data: a folder with `train/` and `val/` subfolders, a registry name (`groundup download --list`),
            or None for the data set shipped inside the package (imagenette-mini).
        epochs: number of epochs.
        lr: the learning rate (the peak of the one-cycle schedule), or "auto" to use the LR finder's
            suggestion (replaced by the number found before training starts).
        bs: training batch size (validation: twice as many, unless `valid_bs`).
        valid_bs: the validation batches' size; None: twice `bs` (on a CPU a smaller one can be faster:
            `resnet_fast` evaluated Imagenette's 3,925 images at 64 px in 0.78-0.99x the time in batches of 64).
        valid_every: validate only every `valid_every`-th epoch and the last one (`ValidateEvery`); the
            other epochs' rows have no validation columns. 1: every epoch.
        size: images are squashed to `size`×`size` pixels.
        arch: a name from `groundup.nn.models.ARCHS`.
        schedule: "one-cycle" (warm up, then anneal; momentum inverse) or "constant".
        opt: "adam" (AdamW, weight decay 0.01) or "sgd" (momentum 0.9, weight decay 1e-4).
        num_workers: data-loading processes; None: one per CPU core (at most 8).
        seed: fixes the initial weights and the shuffling: same seed, same run.
        amp: mixed precision (bfloat16 on CPU, float16 on CUDA).
        compile: train a `torch.compile`d model (`Learner.compile`); pays off only over enough
            steps (`benchmarks/bench_compile.py`). The training loader then drops each epoch's
            last, smaller batch (a new batch shape would be compiled again).
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
        wd: weight decay; None: the optimizer's default (`DEFAULT_WD`: 0.01 for adam, 1e-4 for sgd).
        momentum: SGD's momentum or Adam's beta1, kept fixed; None: 0.9, and under one-cycle the
            schedule's cycle 0.95 -> 0.85 -> 0.95.
        nesterov: with `opt="sgd"`, Nesterov momentum (`SGD(nesterov=True)`).
        monitor: the metric that decides `best.pt` and early stopping: "valid_loss" (lower is
            better) or "valid_acc" (higher is better).
        patience: stop when `monitor` has not improved for this many epochs (`EarlyStopping`);
            None: run every epoch.
        clip: clip the gradient norm to this before each step (`GradientClipping`); None: no clipping.
        accumulate: add up the gradients of this many batches per step, the loss divided by it
            (`GradientAccumulation`): like a batch this many times larger.
        ema: validate, save and finish with an exponential moving average of the weights with this
            decay, in [0, 1) (`EMA`): much better than the weights while the learning rate is high;
            0: no average.
        tensorboard: also write TensorBoard event files into the run folder's `tensorboard/`
            (`TensorBoardLogger`; needs `pip install 'groundup[tensorboard]'`).
        skip_corrupt: skip images that cannot be decoded (with a warning) instead of stopping.
        exif_orientation: turn photos as their EXIF orientation tag says (False: `--no-exif-orientation`).
        augment: random crops and horizontal flips of the training batches (`BatchAugment`).
        crop: with `augment`, the kind of crop: "resize" (random resized crops; the training images
            are then decoded and cached at 1.25×`size`) or "pad" (random shifts by up to `size // 16`
            pixels of the image at `size`, padded by reflection: objects keep their scale).
        crop_scale: with `augment` and "resize" crops, the smallest fraction of an image's area a crop covers.
        train_size: with `augment`, the side of the training crops; None: `size`. Smaller trains
            faster while validation still sees `size` (on Imagenette at 64 px, 56-px crops lost
            more accuracy than their saved time bought back: see the README's fast recipe).
        start_size: progressive resizing: the side of the training images in the first epochs, growing
            in steps of 16 pixels to `size` (or `train_size`) by `grow_until` of the epochs
            (`ProgressiveResize`); None: every epoch at full size.
        grow_until: with `start_size`, the fraction of the epochs after which training is at full size.
        label_smoothing: the loss's label smoothing (0: plain cross-entropy).
        tta: evaluate the finished model with test-time augmentation (each validation image and its
            mirror image, averaged): the interpretation and summary's `tta` accuracy.
        channels_last: keep conv weights in the channels-last (NHWC) memory format, which the
            NHWC batches already have: faster convolutions on CPU.
        deterministic: make torch pick deterministic algorithms (`groundup.utils.rng.set_deterministic`):
            on CUDA, cuDNN's and cuBLAS's fastest kernels may add in a different order each run, so
            only then does a resumed or repeated GPU run equal the first bit for bit. Costs some speed.
        wd_norms: weight decay on 1-D parameters too (norm scales and shifts, biases); False leaves
            them out, as timm and fastai do (`decay_groups`).
        warmup: fraction of the one-cycle schedule spent warming up.
        anneal: how one-cycle anneals after the warm-up: "linear" (the walkthrough) or "cos".
        recipe: the named preset (`groundup train --list-recipes`) the settings started from, if any.
        labels: a CSV of labels (file name, label; see `groundup.data.csv_labels`), relative to
            `data` (or absolute): the images are then the files it lists, under the `data` folder.
        valid_col: with `labels`, the CSV's column (name or number) that is 1/true for validation images.
        valid_pct: the share of the images held out for validation when the data has no validation
            part (no val/ folder); None: 0.2 there (and an error where the data has one).
        task: "auto" (multi-label where any image has several labels), "single" or "multi".
        threshold: multi-label: the probability from which a tag is predicted.
        init: start from these trained weights (a run folder or a checkpoint file; `groundup.run.init`)
            and fine-tune: `freeze_epochs` epochs with the body frozen, then `epochs` with discriminative
            learning rates `slice(lr / 200, lr / 2)` (fastai's `fine_tune`); None: train from scratch.
        freeze_epochs: with `init`, the epochs that train the head (and norm layers) only, before the run's.
    """

    data: str | None = None
    epochs: int = 10
    lr: float | str = DEFAULT_LR
    bs: int = 64
    valid_bs: int | None = None
    valid_every: int = 1
    size: int = 64
    arch: str = "simple_cnn"
    schedule: str = "one-cycle"
    opt: str = "adam"
    num_workers: int | None = None
    seed: int = 42
    amp: bool = False
    compile: bool = False
    device: str = "auto"
    wd: float | None = None
    momentum: float | None = None
    nesterov: bool = False
    monitor: str = "valid_loss"
    patience: int | None = None
    clip: float | None = None
    accumulate: int = 1
    ema: float = 0.0
    tensorboard: bool = False
    skip_corrupt: bool = False
    exif_orientation: bool = True
    augment: bool = False
    crop: str = "resize"
    crop_scale: float = 0.35
    train_size: int | None = None
    start_size: int | None = None
    grow_until: float = 0.5
    label_smoothing: float = 0.0
    tta: bool = False
    channels_last: bool = False
    deterministic: bool = False
    wd_norms: bool = True
    warmup: float = 0.25
    anneal: str = "linear"
    recipe: str | None = None
    labels: str | None = None
    valid_col: str | int | None = None
    valid_pct: float | None = None
    task: str = "auto"
    threshold: float = 0.5
    init: str | None = None
    freeze_epochs: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (as its command-line flag)."""
        for name in ("epochs", "bs", "valid_every"):
            check_int("", f"--{name.replace('_', '-')}", getattr(self, name))
        if self.valid_bs is not None:
            check_int("", "--valid-bs", self.valid_bs)
        check_size("", "--size", self.size)
        if self.lr != "auto" and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                  or not 0 < self.lr < math.inf):
            raise ValueError(f"--lr must be a positive number or 'auto', got {self.lr!r}")
        check_choice("--arch", self.arch, sorted(ARCHS))
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_choice("--opt", self.opt, OPTIMIZERS)
        if self.num_workers is not None:
            check_int("", "--num-workers", self.num_workers, low=0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"--seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:  # numpy's generators take seeds in this range
            raise ValueError(f"--seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {self.seed}")
        check_device_name(self.device)
        if self.wd is not None:
            check_number("", "--wd", self.wd)
        if self.momentum is not None:
            check_number("", "--momentum", self.momentum, 0.0, 1.0)
        if self.nesterov and self.opt != "sgd":
            raise ValueError(f"--nesterov is a kind of SGD momentum: it needs --opt sgd (this run: --opt {self.opt})")
        if self.nesterov and self.momentum == 0:
            raise ValueError("--nesterov needs a momentum > 0 (this run: --momentum 0)")
        check_choice("--monitor", self.monitor, MONITORS)
        if self.patience is not None:
            check_int("", "--patience", self.patience)
        if self.clip is not None:
            check_number("", "--clip", self.clip, low_inclusive=False)
        check_int("", "--accumulate", self.accumulate)
        check_number("", "--ema", self.ema, 0.0, 1.0)
        check_choice("--crop", self.crop, CROPS)
        if check_number("", "--crop-scale", self.crop_scale, 0.0, low_inclusive=False) > 1:
            raise ValueError(f"--crop-scale must be a fraction of the image's area in (0, 1], got {self.crop_scale}")
        if self.train_size is not None:
            check_size("", "--train-size", self.train_size)
            if not self.augment:
                raise ValueError(f"--train-size {self.train_size} needs --augment (the training crops are made by it)")
        if self.start_size is not None:
            check_int("", "--start-size", self.start_size, low=8)
        if check_number("", "--grow-until", self.grow_until, 0.0, low_inclusive=False) > 1:
            raise ValueError(f"--grow-until is a fraction of the epochs in (0, 1], got {self.grow_until}")
        if self.start_size is None and self.grow_until != TrainConfig.grow_until:
            raise ValueError(f"--grow-until {self.grow_until} needs --start-size (it says by when progressive "
                             f"resizing from that size reaches full size)")
        check_number("", "--label-smoothing", self.label_smoothing, 0.0, 1.0)
        check_number("", "--warmup", self.warmup, 0.0, 1.0)
        check_choice("--anneal", self.anneal, ANNEALS)
        if self.valid_pct is not None and check_number("", "--valid-pct", self.valid_pct, 0.0, 1.0,
                                                       low_inclusive=False) <= 0:
            raise ValueError(f"--valid-pct must be in (0, 1), got {self.valid_pct}")
        if self.valid_col is not None and self.labels is None:
            raise ValueError(f"--valid-col {self.valid_col} needs --labels (it is a column of the labels CSV)")
        check_choice("--task", self.task, TASKS)
        check_number("", "--threshold", self.threshold, 0.0, 1.0, low_inclusive=False)
        check_int("", "--freeze-epochs", self.freeze_epochs, low=0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """A config from `to_dict`'s output (also from checkpoints of groundup 0.1, which said `workers`)."""
        d = dict(d)
        if "workers" in d and "num_workers" not in d:
            d["num_workers"] = d.pop("workers")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_toml(self) -> str:
        """The settings as TOML, one `key = value` line each, which `from_toml` reads back to an equal config.

        TOML has no None: a setting left unset is a comment that says what happens instead.
        """
        lines = ["# groundup train settings; use them with: groundup train --config FILE"]
        for name, value in self.to_dict().items():
            if value is None:
                lines.append(f"# {name}: not set ({self._unset_meaning(name)})")
            else:
                lines.append(f"{name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    def _unset_meaning(self, name: str) -> str:
        return {"data": "the data set shipped in the package, imagenette-mini",
                "num_workers": "one data-loading process per CPU core, at most 8",
                "wd": f"{self.opt}'s default, {DEFAULT_WD.get(self.opt, 0):g}",
                "momentum": f"{DEFAULT_MOMENTUM}, cycled 0.95 -> 0.85 -> 0.95 under one-cycle",
                "patience": "no early stopping",
                "clip": "no gradient clipping",
                "recipe": "no preset: the settings as given",
                "train_size": "the same as size",
                "valid_bs": "twice bs",
                "start_size": "every epoch at full size",
                "labels": "labels from the class folders",
                "valid_col": "no validation column",
                "valid_pct": "the val/ folder, or a random 0.2 without one",
                "init": "train from scratch"}.get(name, "the default")

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrainConfig:
        """The config in a TOML file (as `to_toml` writes it); an unknown key or bad value is a ValueError."""
        return cls.from_dict(read_toml_settings(path))


def _toml_value(v: Any) -> str:
    """A TOML literal for a bool, number or string (strings as JSON writes them: a valid TOML basic string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    raise TypeError(f"no TOML form for {type(v).__name__} {v!r}")


def read_toml_settings(path: str | os.PathLike, extra: dict[str, type] | None = None) -> dict[str, Any]:
    """The settings in the TOML file `path`, checked: every key must be a `TrainConfig` field (or in `extra`),
    spelled as in Python (`num_workers`) or as the option (`num-workers`); returned with Python's spelling.

    Args:
        path: the file.
        extra: more keys the caller accepts, with their type (e.g. `{"out": str}` for the command line).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not TOML, an unknown key (named with the closest valid one), or a bad value;
            the message starts with the file's name.
    """
    extra = extra or {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # tomllib reads UTF-8 only
        raise ValueError(f"config file {path} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at "
                         f"position {e.start}); save it as UTF-8") from None
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    valid = [*fields, *extra]
    for key in list(data):  # an option's spelling on the command line works too: num-workers = num_workers
        name = key.replace("-", "_")
        if name != key and name in valid:
            if name in data:
                raise ValueError(f"{path}: '{key}' and '{name}' are the same setting; keep one")
            data[name] = data.pop(key)
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"{path}: unknown setting '{key}'{hint}; valid settings: {', '.join(valid)}")
    for key, kind in extra.items():
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"{path}: {key} must be a {kind.__name__}, got {data[key]!r}")
    try:
        TrainConfig(**{k: v for k, v in data.items() if k in fields})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return data


def auto_lr_rule(opt: str) -> dict[str, Any]:
    """How `--lr auto` reads the LR finder's curve for `--opt`: the `method` and `cap` of `suggest_lr`.

    Measured (README, "--lr auto"; `benchmarks/lr_grid.py`, `benchmarks/bench_lr_auto.py`):
    - sgd: fastai's `slide` (or the next rule that applies), no cap: it beat the default lr in
      every cell measured, since 0.01 is far below what SGD trains best with.
    - adam: the default lr (`DEFAULT_LR`), lowered to twice the lr where the loss starts to rise
      ("rise") when that comes first. With simple_cnn and resnet, AdamW's best lr was the default
      on every data set measured, and no rule read from the curve alone did as well (the curve
      scatters between seeds more than the good range is wide); the curve still tells when 0.01
      is too high, as for resnet34.
    """
    check_choice("--opt", opt, OPTIMIZERS)
    return {"method": None, "cap": None} if opt == "sgd" else {"method": "rise", "cap": DEFAULT_LR}


def opt_func_for(name: str, wd: float | None = None, momentum: float | None = None,
                 wd_norms: bool = True, nesterov: bool = False) -> Callable:
    """The optimizer factory for `--opt`: AdamW or SGD, with weight decay `wd` and momentum (Adam: beta1).

    None takes the defaults: AdamW with weight decay 0.01, betas (0.9, 0.99); SGD with momentum 0.9,
    weight decay 1e-4 (`DEFAULT_WD`, `DEFAULT_MOMENTUM`). With `wd_norms=False`, 1-D parameters
    (norm scales and shifts, biases) get no weight decay (`decay_groups`). `nesterov`: SGD's Nesterov
    momentum (SGD only).
    """
    check_choice("--opt", name, OPTIMIZERS)
    if nesterov and name != "sgd":
        raise ValueError(f"--nesterov is a kind of SGD momentum: it needs --opt sgd, got --opt {name}")
    wd = DEFAULT_WD[name] if wd is None else wd
    momentum = DEFAULT_MOMENTUM if momentum is None else momentum
    if name == "sgd":
        opt = functools.partial(SGD, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    else:
        opt = functools.partial(Adam, betas=(momentum, 0.99), weight_decay=wd)
    return opt if wd_norms else functools.partial(_with_decay_groups, opt, wd)


def _with_decay_groups(opt: Callable, wd: float, params, lr: float):
    return opt(decay_groups(params, wd), lr)
