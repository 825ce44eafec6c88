"""Inference: rebuild a trained model from its checkpoint and predict the labels of image files.

A checkpoint has everything needed (see `groundup.utils.checkpoint_file`): the architecture (`arch`), the
preprocessing (image size, vocabulary, normalization statistics) and the weights. Images go through the
same steps as validation images in training: decode and squash to `size`×`size` (`open_image`), then
the checkpoint's `Preprocessing` (normalize, NHWC → NCHW), the model and a softmax.

Example:
    >>> predictor = Predictor.from_checkpoint("runs/2024-01-01-120000/model.pt")
    >>> [p.label for p in predictor.predict(["tench.jpg"])]
    ['n01440764']
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from groundup.utils.checkpoint_file import (CheckpointError, checkpoint_preprocessing, nonfinite_weights, read_checkpoint,
                                             weights_mismatch)
from groundup.utils.checks import check_int
from groundup.utils.devices import resolve_device
from groundup.data.files import get_image_files
from groundup.data.images import CorruptImageError, open_image
from groundup.data.preprocessing import Preprocessing, output_probabilities
from groundup.inference import tta_forward
from groundup.nn.models import build_arch
from groundup.utils.errors import GroundupWarning

__all__ = ["Prediction", "Predictor", "find_images", "load_trained_model"]


@dataclass(frozen=True)
class Prediction:
    """The `top_k` most probable labels of one image, most probable first, with their probabilities.

    `labels` are vocabulary entries (folder names, e.g. `n01440764`); `names` the same classes'
    display names (e.g. `tench`; see `Preprocessing.class_names`), when known. For a multi-label
    model (`multi_label`), they are every tag whose probability is above `threshold`, most
    probable first: possibly none.
    """

    path: str
    labels: list[str]
    probs: list[float]
    names: list[str] | None = field(default=None, compare=False)
    multi_label: bool = False
    threshold: float | None = None

    @property
    def label(self) -> str | None:
        """The most probable label (None for a multi-label prediction without any tag)."""
        return self.labels[0] if self.labels else None

    @property
    def name(self) -> str:
        """The display name of the most probable label (the label itself when there are no names)."""
        return self.names[0] if self.names else self.label

    @property
    def prob(self) -> float | None:
        """The probability of the most probable label."""
        return self.probs[0] if self.probs else None

    def to_dict(self) -> dict:
        """`{"path", "label", "name", "prob", "top": [{"label", "name", "prob"}, ...]}`, ready for JSON;
        multi-label: `{"path", "threshold", "tags": [{"label", "name", "prob"}, ...]}`, every tag above the
        threshold. `label` is the vocabulary's (the folder name, `n01440764`), `name` the class name (`tench`).
        """
        names = self.names or self.labels
        if self.multi_label:
            return {"path": self.path, "threshold": self.threshold,
                    "tags": [{"label": lab, "name": n, "prob": p} for lab, n, p in zip(self.labels, names, self.probs)]}
        return {"path": self.path, "label": self.label, "name": names[0], "prob": self.prob,
                "top": [{"label": lab, "name": name, "prob": p}
                        for lab, name, p in zip(self.labels, names, self.probs)]}


def find_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files from a mix of files and folders (a folder is searched recursively, sorted).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a folder holds no image files, or no path was given.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = get_image_files(p)
            if not found:
                raise ValueError(f"no image files in folder {p} (looked for .jpg, .jpeg, .png, ... recursively)")
            files += sorted(found)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"image or folder not found: {p}")
    if not files:
        raise ValueError("no images given: pass image files or folders of images")
    return files


def load_trained_model(path: str | os.PathLike, model=None, checkpoint: dict | None = None):
    """Load a checkpoint safely; return `(model, preprocessing)`: its model rebuilt (from its `arch`, or
    the `model` given) with its weights, and its `Preprocessing` (image size, vocabulary, class names,
    statistics).

    Any checkpoint of a learner that knew its preprocessing works (`Learner.save`, the `Checkpoint`
    callback, `groundup train`). `checkpoint`: the file's contents when already read (`path` then only
    names it in errors).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated/foreign file, no preprocessing (vocabulary, statistics, image
            size), or weights that do not fit the architecture.
    """
    ckpt = read_checkpoint(path) if checkpoint is None else checkpoint
    pre = checkpoint_preprocessing(ckpt)
    if pre is None or not pre.vocab:
        raise CheckpointError(f"checkpoint {path} has no vocabulary or normalization statistics; it must "
                              f"come from a Learner whose loaders know them (ImageDataLoaders.from_folder)")
    if pre.size is None:
        raise CheckpointError(f"checkpoint {path} does not record the image size its model was trained on")
    spec = ckpt.get("arch")
    if spec is None and isinstance(ckpt.get("config"), dict) and "arch" in ckpt["config"]:
        spec = {"name": ckpt["config"]["arch"], "kwargs": {"n_classes": len(pre.vocab)}}  # format version 1
    if model is None:
        if spec is None:
            raise CheckpointError(f"checkpoint {path} does not say which architecture it holds (its model "
                                  f"was not built by a registered architecture); pass the model: "
                                  f"Predictor.from_checkpoint(path, model=...)")
        model = build_arch(spec)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, ValueError, KeyError) as e:
        arch = f" {spec['name']!r}" if spec else ""
        how = weights_mismatch(model.state_dict(), ckpt["model"]) or (str(e).strip() or type(e).__name__)[:200]
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the architecture{arch} ({how})") from e
    broken = nonfinite_weights(ckpt)
    if broken:  # saved after training diverged (before groundup stopped such runs): it would predict "nan"
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights ({len(broken)} tensors, e.g. "
                              f"{broken[0]}): training had diverged when it was saved; use best.pt or an "
                              f"earlier checkpoint, or train again with a lower learning rate")
    return model, pre


class Predictor:
    """A trained model with what it needs to read images: its `Preprocessing` (vocabulary, image size,
    class names, normalization).

    Args:
        model: the trained model (a groundup Module or torch.nn.Module), mapping (N, 3, H, W) floats
            to (N, n_classes) logits.
        preprocessing: the training data's `Preprocessing`, with a vocabulary and an image size;
            images go through it as validation images did in training.
        device: where to run; default (None or "auto") CUDA when available, else CPU
            (`groundup.utils.devices.resolve_device`).
    """

    def __init__(self, model, preprocessing: Preprocessing, device: str | torch.device | None = None) -> None:
        if not preprocessing.vocab:
            raise ValueError("Predictor needs a preprocessing with a non-empty vocab (the labels in index order)")
        check_int("Predictor", "size", preprocessing.size)
        self.device = resolve_device(device, "Predictor: device")
        self.model = model.to(self.device)
        self.model.eval()
        self.preprocessing = preprocessing

    @property
    def vocab(self) -> list[str]:
        """The labels in index order."""
        return self.preprocessing.vocab

    @property
    def size(self) -> int:
        """Images are squashed to `size`×`size`, as in training."""
        return self.preprocessing.size

    @property
    def class_names(self) -> list[str]:
        """The display name of each label, in the vocabulary's order."""
        return self.preprocessing.class_names

    @property
    def multi_label(self) -> bool:
        """A sigmoid per tag (several tags per image) instead of a softmax over the classes."""
        return self.preprocessing.multi_label

    @property
    def threshold(self) -> float:
        """Multi-label: the probability from which a tag is predicted (`predict(threshold=)` overrides it)."""
        return self.preprocessing.threshold

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        model=None) -> Predictor:
        """Load a checkpoint safely and rebuild its model (see `load_trained_model`)."""
        model, pre = load_trained_model(path, model=model)
        return cls(model, pre, device)

    @torch.no_grad()
    def probabilities(self, xb: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Class probabilities (N, n_classes) for a uint8 image batch (N, H, W, 3) (multi-label: a sigmoid
        per tag); with `tta`, the mean of each image's and its mirror image's (`tta_forward`)."""
        x = self.preprocessing(xb.to(self.device))  # (N, 3, size, size) float32
        logits = (tta_forward(self._checked_model, x, self.multi_label) if tta
                  else self._checked_model(x))  # (N, n_classes)
        return output_probabilities(logits, self.multi_label).cpu()

    def _checked_model(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if logits.ndim != 2 or logits.shape[1] != len(self.vocab):
            raise ValueError(f"the model returned shape {tuple(logits.shape)}, expected (N, {len(self.vocab)})")
        return logits

    def predict(self, images: Sequence[str | os.PathLike], top_k: int = 1, bs: int = 64,
                tta: bool = False, skip_corrupt: bool = False, threshold: float | None = None) -> list[Prediction]:
        """Predict the `top_k` most probable labels of each image file (with `tta`: flip test-time augmentation).

        A multi-label model predicts every tag whose probability is above `threshold` (default the
        one it was trained with), most probable first; `top_k` does not apply.

        Every image is decoded first, so an unreadable one raises `CorruptImageError` (naming the
        file) before any prediction is made; with `skip_corrupt` it is left out with a warning (a
        `GroundupWarning`) and the others are predicted.
        """
        check_int("Predictor.predict", "top_k", top_k)
        check_int("Predictor.predict", "bs", bs)
        k = min(top_k, len(self.vocab))
        threshold = self.threshold if threshold is None else threshold
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"Predictor.predict: threshold must be a probability in (0, 1), got {threshold!r}")
        upright = self.preprocessing.exif_orientation  # as in training
        pixels, read = [], []  # (size, size, 3) uint8 each, and their files
        for path in images:
            try:
                pixels.append(open_image(path, self.size, exif_orientation=upright))
                read.append(path)
            except CorruptImageError as e:
                if not skip_corrupt:
                    raise CorruptImageError(f"{e}; or skip unreadable images with --skip-corrupt (skip_corrupt=True "
                                            f"in Python)") from e
                warnings.warn(f"skipping {e}", GroundupWarning, stacklevel=2)
        images = read
        out: list[Prediction] = []
        for i in range(0, len(pixels), bs):
            probs = self.probabilities(torch.from_numpy(np.stack(pixels[i:i + bs])), tta=tta)  # (n, n_classes)
            if self.multi_label:
                for j, row in enumerate(probs):
                    order = [t for t in row.argsort(descending=True).tolist() if row[t] > threshold]
                    out.append(Prediction(str(images[i + j]), [self.vocab[t] for t in order],
                                          [float(row[t]) for t in order], [self.class_names[t] for t in order],
                                          multi_label=True, threshold=threshold))
                continue
            top = probs.topk(k, dim=1)
            for j, (vals, idxs) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
                out.append(Prediction(str(images[i + j]), [self.vocab[t] for t in idxs], vals,
                                      [self.class_names[t] for t in idxs]))
        return out

    def __repr__(self) -> str:
        return f"Predictor({type(self.model).__name__}, {len(self.vocab)} labels, size={self.size}, device={self.device})"
