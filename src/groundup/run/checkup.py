"""Gather the numbers the training doctor (`groundup.run.doctor`) reads: from a learner just trained, or
from a finished run's folder (`groundup doctor RUN_DIR`, also for runs made before the doctor existed).

    numbers_from_learner(learn, cfg, recorder, interp)   after `fit_run`, in `write_run_folder`
    numbers_from_folder(run_dir)                          metrics.csv, steps.csv, summary.json, config.toml,
                                                          model.pt and the data folder, each if present
    checkup_learner / checkup_folder                      the above, diagnosed and timed: a `Checkup`

What is gathered besides the files: label counts of both sets, the activation statistics of the final
model on `ACTIVATION_IMAGES` validation images (eval mode), copies between the sets
(`groundup.data.duplicates`), and the validation images the model gets wrong (from the interpretation).
"""

from __future__ import annotations

import csv
import json
import os
import time
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groundup.data.duplicates import find_duplicates
from groundup.data.files import get_image_files, grandparent_split, parent_label
from groundup.data.folder import VALID_NAMES
from groundup.data.images import Dataset
from groundup.data.loader import DataLoader, DataLoaders
from groundup.inference import evaluating, inference_batches, model_device
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.stats import layer_stats
from groundup.run.build import augment_for, shipped_dataset
from groundup.run.config import TrainConfig
from groundup.run.doctor import Finding, RunNumbers, diagnose
from groundup.run.interpret import Interpretation
from groundup.run.predictor import load_trained_model

__all__ = ["ACTIVATION_IMAGES", "Checkup", "checkup_folder", "checkup_learner", "label_error_indices",
           "numbers_from_folder", "numbers_from_learner", "sample_layers"]

ACTIVATION_IMAGES = 256  # validation images the activation statistics are taken on (at least one batch)


@dataclass
class Checkup:
    """A diagnosis: the findings (worst first), what could not be checked, and the seconds it took."""

    findings: list[Finding]
    not_checked: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_summary(self) -> dict[str, Any]:
        """The summary.json fields: `diagnosis` (the findings) and `diagnosis_notes`."""
        return {"diagnosis": [f.to_dict() for f in self.findings],
                "diagnosis_notes": {"not_checked": self.not_checked, "seconds": round(self.seconds, 3)}}


def sample_layers(model, loader, preprocessing, n_images: int = ACTIVATION_IMAGES) -> list[dict[str, Any]]:
    """`layer_stats` of the model's children (or the model, if it has none) on the first batches of `loader`,
    until `n_images` are seen."""
    children = list(model.children()) if hasattr(model, "children") else []
    modules = children or [model]

    def run() -> None:
        with evaluating(model) as m:
            seen = 0
            for xb, _ in inference_batches(loader, preprocessing, model_device(m)):
                m(xb[:n_images - seen])
                seen += min(len(xb), n_images - seen)
                if seen >= n_images:
                    break

    return layer_stats(modules, run)


def _counts(labels: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(labels).items()))


def _mistakes(interp: Interpretation) -> list[dict[str, Any]] | None:
    """The validation images predicted wrong (file, actual, predicted, prob, index), or None without file names."""
    if interp.items is None:
        return None
    wrong = (interp.preds != interp.targets).nonzero().flatten().tolist()
    return [{"file": interp.items[i], "actual": interp.class_names[int(interp.targets[i])],
             "predicted": interp.class_names[int(interp.preds[i])], "prob": round(float(interp.probs[i].max()), 4),
             "index": i} for i in wrong]


def numbers_from_learner(learn: Learner, config: dict[str, Any], batch_losses: Sequence[float] | None,
                         interp: Interpretation) -> RunNumbers:
    """The doctor's numbers for a learner after its run (the loaders' data sets, caches warm)."""
    train_ds, valid_ds = learn.dls.train.dataset, learn.dls.valid.dataset
    vocab = list(learn.preprocessing.vocab) if learn.preprocessing is not None else None
    numbers = RunNumbers(history=[dict(r) for r in learn.history], config=dict(config),
                         batch_losses=list(batch_losses) if batch_losses else None,
                         num_workers=getattr(learn.dls.train, "num_workers", None), cpu_cores=_cores(),
                         valid_acc=interp.accuracy, n_classes=interp.n_classes)
    multi_label = learn.preprocessing is not None and learn.preprocessing.multi_label
    if vocab is not None and hasattr(train_ds, "labels") and hasattr(valid_ds, "labels"):
        numbers.train_counts = _label_counts(train_ds.labels, vocab)
        numbers.valid_counts = _label_counts(valid_ds.labels, vocab)
    else:
        numbers.not_checked.append("the classes (the data sets have no labels array)")
    numbers.layers = sample_layers(learn.unwrapped_model, learn.dls.valid, learn.preprocessing)
    if hasattr(train_ds, "files") and hasattr(valid_ds, "files"):
        numbers.duplicates = find_duplicates(train_ds.files, valid_ds.files, train_ds, valid_ds)
    else:
        numbers.not_checked.append("leakage (the data sets have no files)")
    numbers.mistakes = None if multi_label else _mistakes(interp)
    if multi_label:
        numbers.not_checked.append("label errors (not done for multi-label data yet)")
    elif numbers.mistakes is None:
        numbers.not_checked.append("label errors (which validation image is which is not known)")
    return numbers


def _label_counts(labels: Any, vocab: Sequence[str]) -> dict[str, int]:
    """Images per class: from class indices (N,), or per tag from multi-hot rows (N, C)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return {vocab[c]: int(n) for c, n in enumerate(labels.sum(axis=0)) if n}
    return _counts([vocab[int(i)] for i in labels])


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def checkup_learner(learn: Learner, config: dict[str, Any], batch_losses: Sequence[float] | None,
                    interp: Interpretation) -> Checkup:
    """Gather and diagnose a run just trained (see `numbers_from_learner`), timed."""
    start = time.perf_counter()
    findings, not_checked = diagnose(numbers_from_learner(learn, config, batch_losses, interp))
    return Checkup(findings, not_checked, time.perf_counter() - start)


# -- a run folder ------------------------------------------------------------------------------------------
def _floats(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v in ("", None):
            continue
        out[k] = int(v) if k == "epoch" else float(v)
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def numbers_from_folder(run_dir: str | os.PathLike) -> tuple[RunNumbers, Interpretation | None]:
    """The doctor's numbers from what a run folder has; each missing piece is listed in `not_checked`.

    Returns the numbers and the interpretation of the validation set made from `model.pt` (None
    without a model or without the data).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir} (groundup doctor takes the folder a "
                                f"groundup train run wrote, e.g. runs/20240501-093000)")
    numbers = RunNumbers()
    notes = numbers.not_checked
    summary: dict[str, Any] = {}
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    if (run_dir / "config.toml").is_file():
        numbers.config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    elif summary.get("config"):
        numbers.config = dict(summary["config"])
    if not numbers.config and not (run_dir / "metrics.csv").is_file():
        raise ValueError(f"{run_dir} is not a groundup run folder: it has no config.toml, summary.json or "
                         f"metrics.csv")
    if (run_dir / "metrics.csv").is_file():
        numbers.history = [_floats(r) for r in _read_csv(run_dir / "metrics.csv")]
    if (run_dir / "steps.csv").is_file():
        numbers.batch_losses = [float(r["loss"]) for r in _read_csv(run_dir / "steps.csv")]
    else:
        notes.append("the loss batch by batch (no steps.csv): the learning rate is judged from epoch means")
    cfg = numbers.config
    numbers.cpu_cores = (summary.get("machine") or {}).get("cpu_cores_usable") or _cores()
    numbers.n_classes = len(summary["vocab"]) if summary.get("vocab") else None
    numbers.num_workers = cfg.get("num_workers") if cfg.get("num_workers") is not None else min(numbers.cpu_cores, 8)
    data = summary.get("data_path") or cfg.get("data")
    root = _data_root(data)
    if root is None:
        notes.append(f"the data: classes, leakage, label errors (the data folder {data or '(shipped set)'} is not "
                     f"there)")
        return numbers, None
    train_files, valid_files = grandparent_split(get_image_files(root), valid_names=VALID_NAMES)
    numbers.train_counts = _counts([parent_label(f) for f in train_files])
    numbers.valid_counts = _counts([parent_label(f) for f in valid_files])
    model_path = run_dir / "model.pt"
    if not model_path.is_file():
        notes.append("activations and label errors (no model.pt)")
        numbers.duplicates = find_duplicates(train_files, valid_files)
        notes.append("near-copy leakage (no model.pt, so no image size); exact copies were checked")
        return numbers, None
    model, pre = load_trained_model(model_path)
    size = pre.size
    train_size = size
    try:
        aug = augment_for(TrainConfig.from_dict(cfg))
    except (TypeError, ValueError):  # a config.toml edited by hand: read the training images at the model's size
        aug = None
    if aug is not None:
        train_size = max(aug.stored_size, size)  # the size its decode cache holds the training images at
    known = set(pre.vocab)
    train_ds = Dataset(train_files, {v: i for i, v in enumerate(pre.vocab)}, size=train_size, skip_corrupt=True,
                       label_func=lambda f: parent_label(f) if parent_label(f) in known else pre.vocab[0])
    valid_kept = [f for f in valid_files if parent_label(f) in known]
    valid_ds = Dataset(valid_kept, {v: i for i, v in enumerate(pre.vocab)}, size=size, skip_corrupt=True)
    numbers.duplicates = find_duplicates(train_files, valid_kept, train_ds, valid_ds)
    bs = int(cfg.get("bs") or 64) * 2
    dl = DataLoader(valid_ds, bs)
    learn = Learner(model, DataLoaders([], dl, preprocessing=pre), cross_entropy)
    interp = Interpretation.from_learner(learn, dl, tta=bool(cfg.get("tta")))  # the run's own predictions
    numbers.layers = sample_layers(model, dl, pre)
    numbers.mistakes = _mistakes(interp)
    numbers.valid_acc = interp.accuracy
    return numbers, interp


def _data_root(data: str | None) -> Path | None:
    """The run's data folder, if it is still there (summary.json holds it resolved; nothing is downloaded)."""
    if data is None:
        return shipped_dataset()
    path = Path(data).expanduser()
    return path if path.is_dir() else None


def checkup_folder(run_dir: str | os.PathLike) -> tuple[Checkup, Interpretation | None]:
    """Gather and diagnose a finished run's folder (see `numbers_from_folder`), timed."""
    start = time.perf_counter()
    numbers, interp = numbers_from_folder(run_dir)
    findings, not_checked = diagnose(numbers)
    return Checkup(findings, not_checked, time.perf_counter() - start), interp


def label_error_indices(findings: Sequence[Finding]) -> list[int]:
    """The validation indices of the images a `label_errors` finding lists (for their thumbnails)."""
    return [int(it["index"]) for f in findings if f.name == "label_errors" for it in f.items if "index" in it]


