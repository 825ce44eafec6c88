"""`Preprocessing`: everything a trained model needs to turn an image into its input, in one object.

`ImageDataLoaders.from_folder` makes it (image size, vocabulary, class names, normalization
statistics), the Learner carries it (`learn.preprocessing`), every checkpoint stores it under the
one key `"preprocessing"` (as plain data, so it loads with `weights_only=True`), and prediction
and export read it back. A checkpoint therefore always knows how to read a new image.

Calling it is THE step from a uint8 image batch to the model's input (the whole image at `size`,
normalized, NCHW): the Learner's setup applies it to every batch (to training batches after the
augmentation, `BatchAugment`, which is the only other path), and so do `get_preds`, `validate`,
`predict`, `Predictor` and export. One function, so validation during `fit` sees what the final
evaluation and prediction see.

Example:
    >>> pre = Preprocessing(mean=[0.46, 0.46, 0.43], std=[0.26, 0.26, 0.28], size=64, vocab=["cat", "dog"])
    >>> x = pre(xb)                 # uint8 (N, H, W, C) -> float (N, C, 64, 64)
    >>> pre.class_names
    ['cat', 'dog']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from groundup.data.augment import whole_view
from groundup.data.transforms import Normalize, to_nchw
from groundup.utils.checks import check_int

__all__ = ["Preprocessing", "output_probabilities"]


def output_probabilities(logits: Tensor, multi_label: bool) -> Tensor:
    """A model's outputs (N, C) as probabilities, in float32: a softmax over the classes, or for a
    multi-label model a sigmoid per tag. The one place the two tasks differ in reading outputs
    (`Learner.get_preds`, `Predictor` and the exported graph all call it)."""
    return torch.sigmoid(logits.float()) if multi_label else torch.softmax(logits.float(), dim=1)


@dataclass
class Preprocessing:
    """Image size, vocabulary, class names and normalization statistics of a model's inputs.

    Args:
        mean, std: per-channel statistics in [0, 1] units (see `batch_stats`).
        size: images are squashed to `size`×`size` (None: not known, e.g. a model fed tensors).
        vocab: the labels in index order (`vocab[i]` is the label of output `i`), e.g. folder names.
        class_names: human-readable names in the same order; default: the vocabulary itself.
        exif_orientation: images are turned as their EXIF orientation tag says when decoded (see
            `groundup.data.images`); a checkpoint without this entry (groundup 0.2 and older) was
            trained on the pixels as stored, so `from_dict` reads its absence as False.
        multi_label: the task: False, single-label classification (one class per image: softmax,
            the most probable class); True, multi-label (any number of tags per image: a sigmoid per
            tag, and every tag whose probability passes `threshold`).
        threshold: with `multi_label`, the probability from which a tag is predicted.
    """

    mean: Tensor
    std: Tensor
    size: int | None = None
    vocab: list[str] | None = None
    class_names: list[str] | None = None
    exif_orientation: bool = True
    multi_label: bool = False
    threshold: float = 0.5
    _normalize: Normalize | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.mean = torch.as_tensor(self.mean, dtype=torch.float32).flatten().clone()
        self.std = torch.as_tensor(self.std, dtype=torch.float32).flatten().clone()
        if self.size is not None:
            check_int("Preprocessing", "size", self.size)
        if isinstance(self.vocab, Mapping):  # {label: index} from val2idx
            self.vocab = [label for label, _ in sorted(self.vocab.items(), key=lambda kv: kv[1])]
        if self.vocab is not None:
            self.vocab = [str(v) for v in self.vocab]
        if self.class_names is None:
            self.class_names = None if self.vocab is None else list(self.vocab)
        elif self.vocab is not None and len(self.class_names) != len(self.vocab):
            raise ValueError(f"Preprocessing: {len(self.class_names)} class names for {len(self.vocab)} labels; "
                             f"give one name per label, in the vocabulary's order")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0.0 < self.threshold < 1.0:
            raise ValueError(f"Preprocessing: threshold must be a probability in (0, 1), got {self.threshold!r}")
        self.multi_label, self.threshold = bool(self.multi_label), float(self.threshold)
        self._normalize = Normalize(self.mean, self.std)  # checks the statistics

    @property
    def normalize(self) -> Normalize:
        """The `Normalize` built from `mean` and `std` (made once)."""
        return self._normalize

    def __call__(self, xb: Tensor, resize: bool = True) -> Tensor:
        """The model's input for a uint8 image batch (N, H, W, C): float32 (N, C, size, size), on xb's device.

        Each whole image is resized to `size`×`size` (`whole_view`; the identity when it has that
        size already, or when `size` is None), divided by 255 and normalized with `mean` and `std`,
        then laid out NCHW (`to_nchw`, a view). `resize=False` keeps the batch's own size: training
        batches that the augmentation has already cropped to the training size.
        """
        if not (isinstance(xb, Tensor) and xb.dtype == torch.uint8 and xb.ndim == 4):
            got = f"{xb.dtype} of shape {tuple(xb.shape)}" if isinstance(xb, Tensor) else type(xb).__name__
            raise ValueError(f"Preprocessing expects a uint8 image batch (N, H, W, C), got {got}")
        if resize and self.size is not None and xb.shape[-1] in (1, 3, 4):
            xb = whole_view(xb, self.size)  # e.g. the training loader's larger stored images (augmentation)
        return to_nchw(self._normalize(xb))  # (N, C, H, W) float32

    @property
    def stats(self) -> tuple[Tensor, Tensor]:
        """`(mean, std)`."""
        return self.mean, self.std

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings) for a checkpoint or a JSON file."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "size": self.size,
                "vocab": None if self.vocab is None else list(self.vocab),
                "class_names": None if self.class_names is None else list(self.class_names),
                "exif_orientation": self.exif_orientation, "multi_label": self.multi_label,
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """The inverse of `to_dict`."""
        return cls(mean=d["mean"], std=d["std"], size=d.get("size"), vocab=d.get("vocab"),
                   class_names=d.get("class_names"), exif_orientation=bool(d.get("exif_orientation", False)),
                   multi_label=d.get("multi_label", False),
                   threshold=d.get("threshold", 0.5))  # files from before multi-label: single-label

    def with_stats(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Preprocessing:
        """A copy with other statistics (e.g. rank 0's, in a distributed run)."""
        return dataclasses.replace(self, mean=mean, std=std)

    def probabilities(self, logits: Tensor) -> Tensor:
        """The model's outputs (N, C) as probabilities: a softmax over the classes, or (multi-label) a
        sigmoid per tag. Computed in float32."""
        return output_probabilities(logits, self.multi_label)

    def tags(self, probs: Tensor) -> Tensor:
        """Multi-label decisions: a bool (N, C) of the tags whose probability is above `threshold`."""
        return probs > self.threshold

    def __repr__(self) -> str:
        fmt = lambda t: "(" + ", ".join(f"{v:.3f}" for v in t.tolist()) + ")"
        n = "?" if self.vocab is None else len(self.vocab)
        task = f", multi-label (threshold {self.threshold:g})" if self.multi_label else ""
        return f"Preprocessing(size={self.size}, {n} classes{task}, mean={fmt(self.mean)}, std={fmt(self.std)})"
