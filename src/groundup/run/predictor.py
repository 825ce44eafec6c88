"""Inference: rebuild a trained model from its checkpoint and predict the labels of image files.

A checkpoint has everything needed (see `groundup.utils.checkpoint_file`): the architecture (`arch`), the
preprocessing (image size, vocabulary, normalization statistics) and the weights. Images go through the same steps as in training: decode and squash to `size`×`size`
(`open_image`), normalize, NHWC → NCHW, then the model and a softmax.

Example:
    >>> predictor = Predictor.from_checkpoint("runs/2024-01-01-120000/model.pt")
    >>> [p.label for p in predictor.predict(["tench.jpg"])]
    ['n01440764']
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from groundup.utils.checkpoint_file import CheckpointError, checkpoint_preprocessing, read_checkpoint, weights_mismatch
from groundup.utils.checks import check_device, check_int
from groundup.data.files import get_image_files
from groundup.data.images import open_image
from groundup.data.preprocessing import Preprocessing
from groundup.data.transforms import Normalize, to_nchw
from groundup.inference import tta_forward
from groundup.nn.models import build_arch

__all__ = ["Prediction", "Predictor", "find_images", "load_trained_model"]


@dataclass(frozen=True)
class Prediction:
    """The `top_k` most probable labels of one image, most probable first, with their probabilities.

    `labels` are vocabulary entries (folder names, e.g. `n01440764`); `names` the same classes'
    display names (e.g. `tench`; see `Preprocessing.class_names`), when known.
    """

    path: str
    labels: list[str]
    probs: list[float]
    names: list[str] | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.labels[0]

    @property
    def name(self) -> str:
        """The display name of the most probable label (the label itself when there are no names)."""
        return self.names[0] if self.names else self.labels[0]

    @property
    def prob(self) -> float:
        """The probability of the most probable label."""
        return self.probs[0]

    def to_dict(self) -> dict:
        """`{"path", "label", "name", "prob", "top": [{"label", "name", "prob"}, ...]}`, ready for JSON.

        `label` is the vocabulary's (the folder name, `n01440764`), `name` the class name (`tench`).
        """
        names = self.names or self.labels
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
    broken = [k for k, t in ckpt["model"].items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:  # saved after training diverged (before groundup stopped such runs): it would predict "nan"
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights ({len(broken)} tensors, e.g. "
                              f"{broken[0]}): training had diverged when it was saved; use best.pt or an "
                              f"earlier checkpoint, or train again with a lower learning rate")
    return model, pre


class Predictor:
    """A trained model with what it needs to read images: vocabulary, image size and normalization.

    Args:
        model: the trained model (a groundup Module or torch.nn.Module), mapping (N, 3, H, W) floats
            to (N, n_classes) logits.
        vocab: the labels in index order.
        size: images are squashed to `size`×`size`, as in training.
        normalize: the training normalization.
        device: where to run; default CUDA when available, else CPU.
        class_names: the display name of each label, in the vocabulary's order (default: the labels).
    """

    def __init__(self, model, vocab: Sequence[str], size: int, normalize: Normalize,
                 device: str | torch.device | None = None, class_names: Sequence[str] | None = None) -> None:
        if not vocab:
            raise ValueError("Predictor needs a non-empty vocab (the labels in index order)")
        check_int("Predictor", "size", size)
        self.device = check_device("Predictor", "device", device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        self.model.eval()
        self.vocab, self.size, self.normalize = list(vocab), size, normalize
        if class_names is not None and len(class_names) != len(self.vocab):
            raise ValueError(f"Predictor: {len(class_names)} class names for {len(self.vocab)} labels; give "
                             f"one name per label, in the vocabulary's order")
        self.class_names = list(class_names) if class_names is not None else list(self.vocab)
        self.preprocessing: Preprocessing | None = None  # all of it, when loaded from a checkpoint

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        model=None) -> Predictor:
        """Load a checkpoint safely and rebuild its model (see `load_trained_model`)."""
        model, pre = load_trained_model(path, model=model)
        predictor = cls(model, pre.vocab, pre.size, pre.normalize, device, class_names=pre.class_names)
        predictor.preprocessing = pre
        return predictor

    @torch.no_grad()
    def probabilities(self, xb: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Class probabilities (N, n_classes) for a uint8 image batch (N, size, size, 3); with `tta`,
        the mean of each image's and its mirror image's (`groundup.inference.tta_forward`)."""
        x = to_nchw(self.normalize(xb.to(self.device)))  # (N, 3, size, size) float32
        logits = tta_forward(self._checked_model, x) if tta else self._checked_model(x)  # (N, n_classes)
        return torch.softmax(logits.float(), dim=1).cpu()

    def _checked_model(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if logits.ndim != 2 or logits.shape[1] != len(self.vocab):
            raise ValueError(f"the model returned shape {tuple(logits.shape)}, expected (N, {len(self.vocab)})")
        return logits

    def predict(self, images: Sequence[str | os.PathLike], top_k: int = 1, bs: int = 64,
                tta: bool = False) -> list[Prediction]:
        """Predict the `top_k` most probable labels of each image file (with `tta`: flip test-time augmentation).

        Every image is decoded first, so an unreadable one raises `CorruptImageError` (naming the
        file) before any prediction is made.
        """
        check_int("Predictor.predict", "top_k", top_k)
        check_int("Predictor.predict", "bs", bs)
        k = min(top_k, len(self.vocab))
        pixels = [open_image(p, self.size) for p in images]  # (size, size, 3) uint8 each
        out: list[Prediction] = []
        for i in range(0, len(pixels), bs):
            probs = self.probabilities(torch.from_numpy(np.stack(pixels[i:i + bs])), tta=tta)  # (n, n_classes)
            top = probs.topk(k, dim=1)
            for j, (vals, idxs) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
                out.append(Prediction(str(images[i + j]), [self.vocab[t] for t in idxs], vals,
                                      [self.class_names[t] for t in idxs]))
        return out

    def __repr__(self) -> str:
        return f"Predictor({type(self.model).__name__}, {len(self.vocab)} labels, size={self.size}, device={self.device})"
