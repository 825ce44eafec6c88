"""`groundup predict`: the most probable labels of images, from any groundup checkpoint."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from groundup.commands.options import HelpFormatter, add_device_option
from groundup.run.predictor import Predictor, find_images
from groundup.utils.devices import resolve_device

NAME = "predict"


def add_parser(sub) -> argparse.ArgumentParser:
    pr = sub.add_parser(NAME, formatter_class=HelpFormatter, help="predict the labels of images",
                        description="Print the predicted class and its probability for each image: one "
                                    "tab-separated line per image, the path, then a class name and its "
                                    "probability for each of the --top classes (a tab, newline, carriage "
                                    "return or backslash in a path or name is written as \\t, \\n, \\r or "
                                    "\\\\). --json prints the vocabulary labels (folder names) instead. A "
                                    "multi-label model prints every tag above the threshold with its "
                                    "probability, most probable first (none: the path alone).")
    pr.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint (model.pt, best.pt, or one written "
                                                             "by Learner.save)")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, or folders searched "
                                                                         "recursively for images")
    pr.add_argument("--skip-corrupt", action="store_true",
                    help="leave out images that cannot be decoded (with a warning) instead of stopping")
    pr.add_argument("--top", type=int, default=1, metavar="K", help="show the K most probable labels")
    pr.add_argument("--json", action="store_true", help="print JSON: a list of {path, label, name, prob, top} (label: "
                                                        "the folder name, name: the class name; multi-label: "
                                                        "{path, threshold, tags: [{label, name, prob}]})")
    pr.add_argument("--threshold", type=float, default=None, metavar="P",
                    help="multi-label: print the tags whose probability is above P (default: the one the model "
                         "was trained with)")
    pr.add_argument("--tta", action="store_true",
                    help="flip test-time augmentation: average each image's prediction with its mirror image's")
    add_device_option(pr, "predict")
    pr.set_defaults(run=run)
    return pr


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=resolve_device(args.device))
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must be a probability in (0, 1), got {args.threshold}")
    preds = predictor.predict(find_images(args.images), top_k=args.top, tta=args.tta, threshold=args.threshold,
                              skip_corrupt=args.skip_corrupt)
    if args.json:
        print(json.dumps([p.to_dict() for p in preds], indent=2))
        return 0
    for p in preds:  # path, then (name, probability) pairs: every field its own tab-separated column
        names = p.names or p.labels
        print("\t".join([tsv_field(p.path), *(f"{tsv_field(name)}\t{prob:.4f}" for name, prob in zip(names, p.probs))]))
    return 0


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_field(text: str) -> str:
    """`text` safe inside one tab-separated field: backslash, tab, newline and CR escaped as \\\\, \\t, \\n, \\r.

    (The escapes PostgreSQL's COPY writes.) A label comes from a folder name, which may hold any of them.
    """
    return text.translate(_TSV_ESCAPES)
