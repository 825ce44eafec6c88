"""`Interpretation`: what a model learned, class by class: confusion matrix, per-class scores, top losses.

Made from a Learner (its validation set, or any loader) or from a checkpoint and a labelled folder
(which is what `groundup evaluate` does). It runs the model once (`Learner.get_preds`) and keeps
each item's probabilities, target and loss; everything else is computed from those.

Example:
    >>> interp = Interpretation.from_learner(learn)      # the validation set
    >>> interp.confusion_matrix()                        # rows: actual class, columns: predicted
    >>> interp.per_class()[0]
    {'label': 'n01440764', 'name': 'tench', 'support': 387, 'accuracy': 0.81, 'precision': 0.77, ...}
    >>> interp.most_confused(min_count=5)                # [('English springer', 'golf ball', 12), ...]
    >>> interp.top_losses(3)                             # the three images the model got most wrong
    >>> interp.plot_confusion_matrix("confusion_matrix.png"); interp.plot_top_losses(9, "top_losses.png")

    >>> interp = Interpretation.from_checkpoint("runs/a/model.pt", "data/test")   # any labelled folder

A multi-label model (several tags per image) has no confusion matrix: `per_class()` gives each
tag's precision, recall and F1 (`plot_per_tag` draws them), `fbeta()` the micro or macro F-beta
over every decision, and `accuracy` is `accuracy_multi` (the share of (image, tag) decisions right).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from groundup.data.csv_labels import read_label_csv
from groundup.data.download import shipped_dataset
from groundup.data.files import get_image_files, parent_label
from groundup.data.folder import VALID_NAMES
from groundup.data.images import Dataset
from groundup.data.loader import DataLoader, DataLoaders
from groundup.data.show import image_grid
from groundup.learner import Learner
from groundup.losses import binary_cross_entropy_with_logits, cross_entropy
from groundup.metrics import fbeta_multi
from groundup.run.predictor import load_trained_model
from groundup.utils.checkpoint_file import read_checkpoint
from groundup.utils.checks import check_int
from groundup.utils.devices import resolve_device
from groundup.utils.plots import finish_figure, plt, save_figure

__all__ = ["PER_CLASS_COLUMNS", "Interpretation", "TopLoss", "format_per_class", "labelled_files", "trained_data"]

PER_CLASS_COLUMNS = ("label", "name", "support", "accuracy", "precision", "recall", "f1")


class TopLoss(NamedTuple):
    """One item of `Interpretation.top_losses`."""

    index: int  # the item's position in the loader's order (the data set's, for an unshuffled loader)
    loss: float
    actual: str  # the class name of the target
    predicted: str  # the class name of the most probable class
    prob: float  # the probability of the predicted class
    item: str | None  # the image file, when known


def labelled_files(folder: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The images of a labelled folder, each in a folder named after its label.

    `folder/<split>/<label>/*.jpg` with `split` given; else `folder/val/<label>/*.jpg` (or `valid/`)
    when there is one, as in a training data set; else `folder/<label>/*.jpg`, as in a test set.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: no images, or images that are not in a label folder.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root} (expected {root}/<label>/*.jpg, or a data "
                                f"set with {root}/val/<label>/*.jpg)")
    if split is not None:
        base = root / split
        if not base.is_dir():
            raise FileNotFoundError(f"no {split}/ folder in {root}")
    else:
        base = next((root / n for n in VALID_NAMES if (root / n).is_dir()), root)
    files = sorted(get_image_files(base))
    if not files:
        raise ValueError(f"no image files in {base}; expected {base}/<label>/*.jpg")
    loose = [f for f in files if f.parent == base]
    if loose:
        raise ValueError(f"{base} holds images outside label folders (e.g. {loose[0].name}); put each image "
                         f"in a folder named after its label: {base}/<label>/*.jpg")
    return files


def trained_data(ckpt: dict, path: str | os.PathLike) -> Path:
    """The data folder a checkpoint of `groundup train` was trained on (`path` names the file in errors)."""
    recorded = (ckpt.get("run") or {}).get("data_path")
    if recorded is None and isinstance(ckpt.get("config"), dict) and ckpt["config"].get("data") is None:
        recorded = shipped_dataset()  # a run on the shipped set, before checkpoints recorded the folder
    if recorded is None:
        raise ValueError(f"checkpoint {path} does not record the data it was trained on (it was not written by "
                         f"groundup train); pass the labelled images: --data FOLDER")
    if not Path(recorded).is_dir():
        raise FileNotFoundError(f"checkpoint {path} was trained on {recorded}, which is not there any more; pass "
                                f"the labelled images: --data FOLDER")
    return Path(recorded)


class Interpretation:
    """Each item's class probabilities, target and loss, and what they say about the model.

    Args:
        probs: (N, n_classes) class probabilities.
        targets: (N,) class indices.
        losses: (N,) the loss of each item.
        class_names: the display name of each class (see `Preprocessing.class_names`).
        vocab: the labels (folder names) in index order; default the class names.
        image: `image(i) -> uint8 (H, W, 3)` pixels of item `i`, for `plot_top_losses`; None if unknown.
        items: the file of each item, if known.
        multi_label: the probabilities are a sigmoid per tag and the targets (N, n_classes) multi-hot;
            a tag is predicted where its probability is above `threshold`.

    Build one with `from_learner` or `from_checkpoint`.
    """

    def __init__(self, probs: Tensor, targets: Tensor, losses: Tensor, class_names: Sequence[str],
                 vocab: Sequence[str] | None = None, image: Callable[[int], Any] | None = None,
                 items: Sequence[str | os.PathLike] | None = None, multi_label: bool = False,
                 threshold: float = 0.5) -> None:
        want = tuple(probs.shape) if multi_label else (len(probs),)
        if probs.ndim != 2 or tuple(targets.shape) != want or losses.shape != (len(probs),):
            raise ValueError(f"Interpretation needs probs (N, C), targets {'(N, C)' if multi_label else '(N,)'} and "
                             f"losses (N,), got shapes {tuple(probs.shape)}, {tuple(targets.shape)} and "
                             f"{tuple(losses.shape)}")
        if len(class_names) != probs.shape[1]:
            raise ValueError(f"Interpretation: {len(class_names)} class names for {probs.shape[1]} model "
                             f"outputs; the model's last layer needs one output per class (e.g. "
                             f"simple_cnn(n_classes={len(class_names)}))")
        self.multi_label, self.threshold = multi_label, threshold
        self.probs = probs.float().cpu()
        self.targets = (targets > 0.5).cpu() if multi_label else targets.long().cpu()  # (N, C) bool or (N,)
        self.losses = losses.float().cpu()
        self.preds = self.probs > threshold if multi_label else self.probs.argmax(dim=1)  # (N, C) bool or (N,)
        self.class_names = [str(n) for n in class_names]
        self.vocab = list(vocab) if vocab is not None else list(self.class_names)
        self._image = image
        self.items = [str(p) for p in items] if items is not None else None
        self.learn: Learner | None = None  # the learner whose model made the predictions, if known
        self.folder: Path | None = None  # the labelled folder, for one made by `from_checkpoint`

    # -- making one ---------------------------------------------------------------------------------
    @classmethod
    def from_learner(cls, learn: Learner, dl=None, tta: bool = False) -> Interpretation:
        """Run `learn`'s model on `dl` (default the validation loader) and interpret the results.

        With `tta`, each image's prediction averages it and its mirror image (see `Learner.get_preds`).
        """
        dl = learn.dls.valid if dl is None else dl
        probs, targets, losses = learn.get_preds(dl, with_loss=True, tta=tta)
        pre = learn.preprocessing
        n = probs.shape[1]
        names = pre.class_names if pre is not None and pre.class_names else [str(i) for i in range(n)]
        vocab = pre.vocab if pre is not None and pre.vocab else None
        # Images can be looked up by position only if the loader yields the whole data set in order
        # (less the images skipped as unreadable).
        ds = getattr(dl, "dataset", None)
        skipped = ds.skipped() if callable(getattr(ds, "skipped", None)) else set()
        kept = [i for i in range(len(ds)) if i not in skipped] if hasattr(ds, "__len__") else []
        in_order = (ds is not None and hasattr(ds, "__getitem__") and len(kept) == len(probs)
                    and not getattr(dl, "shuffle", False) and getattr(dl, "world_size", 1) == 1)
        image = (lambda j: ds[kept[j]][0]) if in_order else None
        files = getattr(ds, "files", None)
        items = [files[i] for i in kept] if in_order and files is not None else None
        multi = pre is not None and pre.multi_label
        interp = cls(probs, targets, losses, names, vocab, image=image, items=items, multi_label=multi,
                     threshold=pre.threshold if multi else 0.5)
        interp.learn = learn
        return interp

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, folder: str | os.PathLike | None = None,
                        split: str | None = None, bs: int = 64, num_workers: int = 0,
                        loss_func: Callable | None = None,
                        device: str | torch.device | None = None, tta: bool = False,
                        labels: str | os.PathLike | None = None) -> Interpretation:
        """Interpret a checkpoint's model on a labelled folder (see `labelled_files` for the layouts), or on
        the images a CSV of labels lists (`labels`; several space-separated tags for a multi-label model).

        The model, image size, vocabulary, class names and statistics come from the checkpoint
        (see `groundup.run.predictor.load_trained_model`); the folder's labels must be in its vocabulary.

        Args:
            checkpoint: a checkpoint file (`model.pt`, `best.pt`, one written by `Learner.save`).
            folder: the labelled images: `folder/<label>/*.jpg`, or a data set with `val/`; default the
                data the checkpoint was trained on (recorded by `groundup train`), its `val/` split.
            split: take `folder/<split>/<label>/*.jpg` (e.g. "train" or "test").
            bs, num_workers: how the images are loaded.
            loss_func: the loss per item (default: the one `groundup train` trains with, cross-entropy or
                for a multi-label model binary cross-entropy).
            device: where the model runs; default (None or "auto") CUDA when available, else CPU
                (`groundup.utils.devices.resolve_device`).
            tta: average each image's prediction with its mirror image's (flip test-time augmentation).
            labels: a CSV of labels under `folder` (file name, label; see `groundup.data.csv_labels`):
                every image it lists, in place of the folder's label folders.
        """
        dev = resolve_device(device, "Interpretation: device")  # before the model loads: a bad name fails fast
        ckpt = read_checkpoint(checkpoint)
        model, pre = load_trained_model(checkpoint, checkpoint=ckpt)
        folder = Path(folder) if folder is not None else trained_data(ckpt, checkpoint)
        if labels is not None:
            table = read_label_csv(folder / labels, folder)
            files = table.files
            tags = [cell.split() if pre.multi_label else [cell] for cell in table.labels]
        else:  # a folder gives each image one label (for a multi-label model: one tag)
            files = labelled_files(folder, split)
            tags = [[parent_label(f)] for f in files]
        unknown = sorted({t for ts in tags for t in ts} - set(pre.vocab))
        if unknown:
            raise ValueError(f"{folder} has labels the checkpoint {checkpoint} was not trained on: "
                             f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}; its labels are "
                             f"{', '.join(pre.vocab[:10])}{' ...' if len(pre.vocab) > 10 else ''}")
        vocab = {label: i for i, label in enumerate(pre.vocab)}
        if pre.multi_label:
            targets = np.zeros((len(files), len(vocab)), dtype=np.float32)  # multi-hot (N, C)
            for i, ts in enumerate(tags):
                targets[i, [vocab[t] for t in ts]] = 1.0
        else:
            targets = np.array([vocab[ts[0]] for ts in tags], dtype=np.int64)  # (N,)
        if loss_func is None:
            loss_func = binary_cross_entropy_with_logits if pre.multi_label else cross_entropy
        ds = Dataset(files, vocab, size=pre.size, targets=targets, exif_orientation=pre.exif_orientation)
        dl = DataLoader(ds, bs, num_workers=num_workers)
        learn = Learner(model.to(dev), DataLoaders([], dl, preprocessing=pre), loss_func)
        try:
            interp = cls.from_learner(learn, dl, tta=tta)
        finally:
            dl.close()
        interp.folder = folder
        return interp

    # -- numbers ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.targets)

    @property
    def n_classes(self) -> int:
        return self.probs.shape[1]

    @property
    def accuracy(self) -> float:
        """The share of items whose most probable class is the target (multi-label: of the (item, tag)
        decisions that are right, `accuracy_multi`)."""
        return float((self.preds == self.targets).float().mean())

    def fbeta(self, beta: float = 1.0, average: str = "micro") -> float:
        """Multi-label: the F-beta of the tag decisions, "micro" or "macro" averaged (see `fbeta_multi`)."""
        self._needs_multi_label("fbeta")
        return float(fbeta_multi(self.probs, self.targets.float(), beta, self.threshold, average, sigmoid=False))

    def _needs_multi_label(self, what: str) -> None:
        if not self.multi_label:
            raise ValueError(f"{what} is for multi-label models; this one predicts one class per image (see "
                             f"accuracy and per_class())")

    @property
    def loss(self) -> float:
        """The mean loss per item."""
        return float(self.losses.mean())

    def confusion_matrix(self) -> Tensor:
        """(n_classes, n_classes) int64 counts: entry [i, j] counts the items of class i predicted as j."""
        if self.multi_label:
            raise ValueError("a multi-label model has no confusion matrix (an image may have several tags, or "
                             "none); per_class() gives each tag's precision, recall and F1, plot_per_tag draws them")
        n = self.n_classes
        return torch.bincount(self.targets * n + self.preds, minlength=n * n).reshape(n, n)

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: `label`, `name`, `support`, `accuracy`, `precision`, `recall`, `f1`.

        - support: how many items of the class there are.
        - accuracy: the share of the class's items predicted correctly (what "the accuracy on class c"
          means; by definition the same number as recall, which is listed under its own name too).
        - precision: of the items predicted as the class, the share that are of it.
        - recall: of the items of the class, the share predicted as it.
        - f1: the harmonic mean of precision and recall.

        A score with nothing to divide by (a class never predicted, or absent) is None.

        Multi-label: one row per tag; support is how many items have the tag, accuracy the share of
        items whose decision on the tag is right (tag predicted or not, as it should be), precision,
        recall and f1 those of the tag's decisions.
        """
        if self.multi_label:
            pred, true = self.preds, self.targets  # (N, C) bool each
            right = (pred == true).double().mean(0)  # the share of right decisions on each tag
            return self._score_rows((pred & true).sum(0), true.sum(0), pred.sum(0), right)
        cm = self.confusion_matrix().double()
        true_pos, support = cm.diagonal(), cm.sum(dim=1)
        return self._score_rows(true_pos, support, cm.sum(dim=0), None)

    def _score_rows(self, true_pos: Tensor, support: Tensor, predicted: Tensor,
                    accuracy: Tensor | None) -> list[dict[str, Any]]:
        """`per_class`'s rows from each class's true positives, support and predicted count (all (C,));
        `accuracy` per class, or None for the recall."""
        rows = []
        for c in range(self.n_classes):
            recall = float(true_pos[c] / support[c]) if support[c] else None
            precision = float(true_pos[c] / predicted[c]) if predicted[c] else None
            f1 = None
            if precision is not None and recall is not None:
                f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append({"label": self.vocab[c], "name": self.class_names[c], "support": int(support[c]),
                         "accuracy": recall if accuracy is None else float(accuracy[c]),
                         "precision": precision, "recall": recall, "f1": f1})
        return rows

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """`(actual, predicted, count)` for each pair of classes confused at least `min_count` times,
        most frequent first (none for a multi-label model, whose tags are not exclusive)."""
        check_int("most_confused", "min_count", min_count)
        if self.multi_label:
            return []
        cm = self.confusion_matrix()
        n = self.n_classes
        pairs = [(self.class_names[i], self.class_names[j], int(cm[i, j]))
                 for i in range(n) for j in range(n) if i != j and cm[i, j] >= min_count]
        return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))

    def top_losses(self, k: int = 9) -> list[TopLoss]:
        """The `k` items with the highest loss (at most all of them), highest first."""
        check_int("top_losses", "k", k)
        values, idxs = self.losses.topk(min(k, len(self)))
        out = []
        for loss, i in zip(values.tolist(), idxs.tolist()):
            if self.multi_label:  # the tags as words; the probability of the most probable tag
                actual, predicted = self._tag_names(self.targets[i]), self._tag_names(self.preds[i])
                out.append(TopLoss(i, loss, actual, predicted, float(self.probs[i].max()),
                                   self.items[i] if self.items else None))
                continue
            pred = int(self.preds[i])
            out.append(TopLoss(i, loss, self.class_names[int(self.targets[i])], self.class_names[pred],
                               float(self.probs[i, pred]), self.items[i] if self.items else None))
        return out

    def _tag_names(self, mask: Tensor) -> str:
        return " ".join(self.class_names[c] for c in mask.nonzero().flatten().tolist()) or "(none)"

    # -- pictures -----------------------------------------------------------------------------------
    def plot_per_tag(self, path: str | os.PathLike = "per_tag.png", title: str | None = None) -> Path:
        """Multi-label: write a bar chart of each tag's precision, recall and F1 to a PNG; return its path."""
        self._needs_multi_label("plot_per_tag")
        rows = self.per_class()
        fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(rows) + 2), 4))
        try:
            x = np.arange(len(rows))
            for k, key in enumerate(("precision", "recall", "f1")):
                ax.bar(x + (k - 1) * 0.27, [r[key] or 0.0 for r in rows], 0.27, label=key)
            ax.set_xticks(x, [r["name"] for r in rows], rotation=45, ha="right")
            ax.set_ylim(0, 1)
            ax.legend(loc="lower right")
            ax.set_title(title or f"per tag ({len(self)} images, micro-F1 {self.fbeta():.3f}, threshold "
                                  f"{self.threshold:g})")
            fig.tight_layout()
            return save_figure(fig, path)
        finally:
            plt.close(fig)

    def confusion_figure(self, title: str | None = None):
        """The confusion matrix as a matplotlib `Figure`: darker is more; counts written in the cells."""
        cm = self.confusion_matrix().numpy()
        n = self.n_classes
        side = max(4.5, 0.55 * n + 2.5)
        fig, ax = plt.subplots(figsize=(side + 1, side))
        image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(n), self.class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), self.class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(title or f"confusion matrix ({len(self)} images, accuracy {self.accuracy:.3f})")
        dark = cm.max() / 2
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if cm[i, j] > dark else "black")
        fig.tight_layout()
        return fig

    def plot_confusion_matrix(self, path: str | os.PathLike | None = None, title: str | None = None):
        """The confusion matrix (rows actual, columns predicted) as a matplotlib `Figure`, also written
        to `path` as a PNG when a path is given (a notebook shows the figure inline)."""
        return finish_figure(self.confusion_figure(title), path)

    def plot_top_losses(self, k: int = 9, path: str | os.PathLike | None = None, ncols: int | None = None):
        """A grid of the `k` items with the highest loss: each image with its true label, the predicted
        label, the probability of the prediction and the loss, as a `Figure` (also a PNG at `path`).

        Raises:
            ValueError: the images are not known (an Interpretation of a shuffled loader, or of
                batches without a data set).
        """
        top = self.top_losses(k)
        entries = []
        for t in top:
            loss = f"{t.loss:.2f}".replace("-0.00", "0.00")  # a rounding error below zero reads as 0
            entries.append((t.index, f"true: {t.actual}\npred: {t.predicted} ({t.prob:.2f})\nloss {loss}",
                            "black" if t.actual == t.predicted else "firebrick"))
        return self._plot_grid(entries, path, f"top {len(top)} losses (true label, predicted label and its "
                                              f"probability, loss)", ncols, "plot_top_losses")

    def plot_items(self, indices: Sequence[int], path: str | os.PathLike | None, title: str,
                   ncols: int | None = None):
        """A grid of the items `indices`, each with its true and predicted label and the prediction's
        probability (e.g. the images a diagnosis lists), as a `Figure` (also a PNG at `path`)."""
        entries = []
        for i in indices:
            pred, actual = int(self.preds[i]), int(self.targets[i])
            caption = (f"true: {self.class_names[actual]}\npred: {self.class_names[pred]} "
                       f"({float(self.probs[i, pred]):.2f})")
            entries.append((i, caption, "black" if pred == actual else "firebrick"))
        return self._plot_grid(entries, path, title, ncols, "plot_items")

    def _plot_grid(self, entries: Sequence[tuple[int, str, str]], path: str | os.PathLike, title: str,
                   ncols: int | None, caller: str):
        """A grid of items as a `Figure` (also a PNG at `path`): `entries` are (index, caption, caption colour)."""
        if self._image is None:
            raise ValueError(f"{caller} needs the images, but this Interpretation was made from a "
                             "loader without a data set in order (shuffled, sharded, or plain batches); make "
                             "it from an unshuffled groundup DataLoader, such as dls.valid")
        if not entries:
            raise ValueError(f"{caller}: no items to show")
        indices, captions, colors = zip(*entries)
        return finish_figure(image_grid([self._image(i) for i in indices], captions, colors, title, ncols), path)

    def __repr__(self) -> str:
        if self.multi_label:
            return (f"Interpretation({len(self)} items, {self.n_classes} tags, accuracy_multi={self.accuracy:.4f}, "
                    f"micro-F1={self.fbeta():.4f})")
        return f"Interpretation({len(self)} items, {self.n_classes} classes, accuracy={self.accuracy:.4f})"


def format_per_class(rows: Sequence[dict[str, Any]]) -> str:
    """`per_class()` rows as a fixed-width text table (None shows as '-')."""
    width = max([len("name"), *(len(str(r["name"])) for r in rows)])
    head = f"{'name':<{width}}  {'support':>7}  {'accuracy':>8}  {'precision':>9}  {'recall':>6}  {'f1':>6}"
    fmt = lambda v, w: f"{'-':>{w}}" if v is None else f"{v:>{w}.4f}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['support']:>7}  {fmt(r['accuracy'], 8)}  "
                     f"{fmt(r['precision'], 9)}  {fmt(r['recall'], 6)}  {fmt(r['f1'], 6)}")
    return "\n".join(lines)
