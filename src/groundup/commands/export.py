"""`groundup export`: a trained model as one file that runs with plain PyTorch (or onnxruntime)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from groundup.commands.options import HelpFormatter
from groundup.run.export import FORMATS, export_checkpoint

NAME = "export"


def add_parser(sub) -> argparse.ArgumentParser:
    ex = sub.add_parser(NAME, formatter_class=HelpFormatter, help="export a model to run without groundup",
                        description="Write a checkpoint's model, with its normalization and class names, as "
                                    "one file that runs with plain PyTorch (pt2: torch.export.load) or "
                                    "onnxruntime (onnx: pip install 'groundup[onnx]'). It takes uint8 RGB "
                                    "images (N, size, size, 3) and returns class probabilities.")
    ex.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint (model.pt, best.pt, or Learner.save's)")
    ex.add_argument("--format", dest="fmt", default="pt2", choices=FORMATS, help="the file format")
    ex.add_argument("--out", default=None, help="the file to write (default: the checkpoint's name with "
                                                "the format's suffix, beside it)")
    ex.set_defaults(run=run)
    return ex


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(f".{args.fmt}")
    path = export_checkpoint(args.checkpoint, out, args.fmt)
    print(f"wrote {path}" + (f" and {path}.json" if args.fmt == "onnx" else ""))
    return 0
