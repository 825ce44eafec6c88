"""Export a trained model so that it runs with plain PyTorch (or onnxruntime), without groundup.

What is exported is the whole path from pixels to probabilities, as one graph: uint8 RGB images
(N, size, size, 3), as groundup's loaders make them, → normalization with the training statistics
→ NCHW → the model → softmax (a sigmoid per tag for a multi-label model) → (N, classes) probabilities. Beside
the graph goes a small JSON record (`groundup.json`: the image size, the class names, the vocabulary,
mean and std, and `exif_orientation`), inside a `.pt2` file and as `FILE.json` next to an `.onnx`
file. Decode each image as groundup does (`groundup.data.images.open_image`): turn it upright as its
EXIF orientation tag says when `exif_orientation` is true (`ImageOps.exif_transpose`), then, for a JPEG,
`im.draft("RGB", (size, size))` first, then `im.convert("RGB").resize((size, size), Image.BILINEAR)`;
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
from groundup.data.preprocessing import Preprocessing, output_probabilities
from groundup.inference import model_device
from groundup.nn.bridge import to_torch
from groundup.run.predictor import load_trained_model

__all__ = ["FORMATS", "ExportedClassifier", "export_checkpoint", "export_model"]

FORMATS = ("pt2", "onnx")
METADATA = "groundup.json"  # the name of the record inside a .pt2 file


class ExportedClassifier(torch.nn.Module):
    """uint8 images (N, H, W, 3) → class probabilities (N, C): `Preprocessing`, model and softmax
    (multi-label: a sigmoid per tag; `groundup.json` says so, with the threshold).

    The images go through the training data's `Preprocessing` (its statistics, on the model's device,
    are exported with the graph as constants), then the trained model (through `to_torch` for a
    groundup model).
    """

    def __init__(self, model: Any, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = to_torch(model)
        self.preprocessing = preprocessing  # its statistics follow the images to their device

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (N, H, W, 3) uint8
        # Inference only: under no_grad the exported graph's output carries no grad_fn and keeps no
        # activations for a backward pass that never comes (the graph records the no_grad too).
        with torch.no_grad():
            logits = self.model(self.preprocessing(images))  # (N, C)
            return output_probabilities(logits, self.preprocessing.multi_label)  # (N, C): softmax, or sigmoids


def _metadata(pre: Preprocessing, fmt: str) -> dict[str, Any]:
    return {"format": "groundup-export", "version": 1, "export_format": fmt,
            "input": f"uint8 RGB images, shape (N, {pre.size}, {pre.size}, 3)",
            "output": (f"tag probabilities (a sigmoid each; a tag is predicted above threshold), shape (N, "
                       f"{len(pre.vocab or [])}), in the order of class_names" if pre.multi_label else
                       f"class probabilities, shape (N, {len(pre.vocab or [])}), in the order of class_names"),
            **pre.to_dict()}


def export_model(model: Any, preprocessing: Preprocessing, out: str | os.PathLike, fmt: str = "pt2") -> Path:
    """Export `model` with `preprocessing` to `out` (see the module docstring); return the file written.

    Args:
        model: the trained model (groundup or torch.nn), mapping (N, 3, H, W) floats to (N, C) logits,
            on any device: it is traced there, and a `.pt2` program is saved for the CPU (it loads on
            any machine; `torch.export.passes.move_to_device_pass(program, "cuda")` moves it back).
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
    device = model_device(model)  # traced where the model is (a GPU model is not moved or copied) ...
    example = (torch.zeros(2, size, size, 3, dtype=torch.uint8, device=device),)
    batch = {"images": {0: torch.export.Dim("batch", min=1, max=65536)}}
    meta = _metadata(preprocessing, fmt)
    if fmt == "pt2":  # exported with grad mode on, so that the graph records forward's no_grad
        program = torch.export.export(module, example, dynamic_shapes=batch)
        if device.type != "cpu":  # ... and saved for the CPU, so that it loads on any machine
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, "cpu")
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
