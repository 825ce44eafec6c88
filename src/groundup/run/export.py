"""Export a trained model so that it runs with plain PyTorch (or onnxruntime), without groundup.

What is exported is the whole path from pixels to probabilities, as one graph: uint8 RGB images
(N, size, size, 3), as groundup's loaders make them, → normalization with the training statistics
→ NCHW → the model → softmax → (N, classes) probabilities. Beside the graph goes a small JSON
record (`groundup.json`: the image size, the class names, the vocabulary, mean and std), inside a
`.pt2` file and as `FILE.json` next to an `.onnx` file. Decode and squash each image to
`size`×`size` RGB as groundup does (`groundup.data.images.open_image`; in plain PIL, for a JPEG
`im.draft("RGB", (size, size))` first, then `im.convert("RGB").resize((size, size), Image.BILINEAR)`),
stack them, and the program does the rest:

    >>> program = torch.export.load("model.pt2")          # plain torch: no groundup import
    >>> probs = program.module()(torch.from_numpy(images))  # images: (N, size, size, 3) uint8
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from groundup.utils.atomic import atomic_write
from groundup.utils.checks import check_choice
from groundup.data.preprocessing import Preprocessing
from groundup.nn.bridge import to_torch
from groundup.run.predictor import load_trained_model

__all__ = ["FORMATS", "ExportedClassifier", "export_checkpoint", "export_model"]

FORMATS = ("pt2", "onnx")
METADATA = "groundup.json"  # the name of the record inside a .pt2 file


class ExportedClassifier(torch.nn.Module):
    """uint8 images (N, H, W, 3) → class probabilities (N, C): normalization, layout, model and softmax.

    The statistics are buffers (exported with the graph); the model is the trained one, through
    `to_torch` for a groundup model.
    """

    def __init__(self, model: Any, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = to_torch(model)
        self.register_buffer("scale", 1 / (preprocessing.std * 255))  # (3,)
        self.register_buffer("bias", -preprocessing.mean / preprocessing.std)  # (3,)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, H, W, 3) uint8
        # Inference only: under no_grad the exported graph's output carries no grad_fn and keeps no
        # activations for a backward pass that never comes (the graph records the no_grad too).
        with torch.no_grad():
            x = torch.addcmul(self.bias, images.float(), self.scale)  # (N, H, W, 3) float32, normalized
            logits = self.model(x.permute(0, 3, 1, 2))  # (N, C)
            return torch.softmax(logits.float(), dim=1)  # (N, C)


def _metadata(pre: Preprocessing, fmt: str) -> dict[str, Any]:
    return {"format": "groundup-export", "version": 1, "export_format": fmt,
            "input": f"uint8 RGB images, shape (N, {pre.size}, {pre.size}, 3)",
            "output": f"class probabilities, shape (N, {len(pre.vocab or [])}), in the order of class_names",
            **pre.to_dict()}


def export_model(model: Any, preprocessing: Preprocessing, out: str | os.PathLike, fmt: str = "pt2") -> Path:
    """Export `model` with `preprocessing` to `out` (see the module docstring); return the file written.

    Args:
        model: the trained model (groundup or torch.nn), mapping (N, 3, H, W) floats to (N, C) logits.
        preprocessing: its `Preprocessing` (image size, class names, statistics).
        out: the file to write (`.pt2` or `.onnx`); written atomically.
        fmt: "pt2" (`torch.export`, loads with `torch.export.load`) or "onnx" (needs
            `pip install groundup[onnx]`; runs with onnxruntime).
    """
    check_choice("export format", fmt, FORMATS)
    if preprocessing.size is None or not preprocessing.vocab:
        raise ValueError("export needs the image size and the vocabulary of the model's training data; "
                         "export a checkpoint of a learner trained on ImageDataLoaders.from_folder")
    out = Path(out)
    size = preprocessing.size
    module = ExportedClassifier(model, preprocessing).eval()
    example = (torch.zeros(2, size, size, 3, dtype=torch.uint8),)
    batch = {"images": {0: torch.export.Dim("batch", min=1, max=65536)}}
    meta = _metadata(preprocessing, fmt)
    if fmt == "pt2":  # exported with grad mode on, so that the graph records forward's no_grad
        program = torch.export.export(module, example, dynamic_shapes=batch)
        with atomic_write(out, durable=True) as f:
            torch.export.save(program, f, extra_files={METADATA: json.dumps(meta)})
        return out
    with torch.no_grad():
        try:
            import onnxscript  # noqa: F401 - torch.onnx's exporter needs it
        except ImportError:
            raise ValueError("ONNX export needs the onnx packages: pip install 'groundup[onnx]' "
                             "(or choose --format pt2, which needs nothing but torch)") from None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(module, example, str(path), input_names=["images"], output_names=["probabilities"],
                              dynamo=True, dynamic_shapes=batch, external_data=False)
            with atomic_write(out, durable=True) as f, open(path, "rb") as src:
                shutil.copyfileobj(src, f)
    with atomic_write(out.with_name(out.name + ".json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    return out


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, fmt: str = "pt2") -> Path:
    """Export the model of any groundup checkpoint (see `export_model`); return the file written."""
    model, pre = load_trained_model(checkpoint)
    return export_model(model, pre, out, fmt)
