"""`groundup evaluate`: confusion matrix, per-class scores and top losses of a checkpoint on labelled data."""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Sequence
from pathlib import Path

from groundup.commands.options import HelpFormatter, non_negative_int, positive_int
from groundup.run.build import find_data
from groundup.run.folder import base_summary, new_out_dir
from groundup.run.interpret import Interpretation, format_per_class
from groundup.run.report import write_per_class_csv, write_report, write_summary

NAME = "evaluate"


def add_parser(sub) -> argparse.ArgumentParser:
    e = sub.add_parser(NAME, formatter_class=HelpFormatter, help="evaluate a checkpoint on a labelled folder",
                       description="Run a checkpoint's model on labelled images (for example a held-out test "
                                   "set), print its loss, accuracy and per-class table, and write "
                                   "per_class.csv, confusion_matrix.png, top_losses.png, summary.json and "
                                   "report.html into --out.")
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint (model.pt, best.pt, or one written "
                                                            "by Learner.save)")
    e.add_argument("--data", default=None, metavar="FOLDER_OR_NAME",
                   help="the labelled images: FOLDER/<label>/*.jpg, or a data set with a val/ folder (its "
                        "val/ split is used), or a data set's name (default: the data the checkpoint was "
                        "trained on, its val/ split)")
    e.add_argument("--split", default=None,
                   help="evaluate FOLDER/SPLIT/<label>/*.jpg instead (e.g. train or test; default: val/ when "
                        "FOLDER has one, else FOLDER itself)")
    e.add_argument("--out", default=None, help="the output folder; it must be new or empty "
                                               "(default: runs/<date-time>-evaluate)")
    e.add_argument("--bs", type=positive_int, default=64, help="batch size")
    e.add_argument("--workers", dest="num_workers", type=non_negative_int, default=0,
                   help="data-loading processes, 0 to load in the main process")
    e.add_argument("--top-losses", type=positive_int, default=9, metavar="K",
                   help="how many images the top-losses grid shows")
    e.add_argument("--tta", action="store_true",
                   help="flip test-time augmentation: average each image's prediction with its mirror image's")
    e.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    e.set_defaults(run=run)
    return e


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    start = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    folder = find_data(args.data) if args.data is not None else None
    interp = Interpretation.from_checkpoint(args.checkpoint, folder, split=args.split, bs=args.bs,
                                            num_workers=args.num_workers, device=args.device, tta=args.tta)
    folder = interp.folder
    out = new_out_dir(args.out, suffix="-evaluate")
    interp.plot_confusion_matrix(out / "confusion_matrix.png")
    interp.plot_top_losses(args.top_losses, out / "top_losses.png")
    per_class = interp.per_class()
    write_per_class_csv(per_class, out / "per_class.csv")
    model = interp.learn.unwrapped_model
    where = f"{folder}/{args.split}" if args.split else str(folder)
    summary = {
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "data_path": str(folder.resolve()),
        "metrics": {"accuracy": interp.accuracy, "loss": interp.loss},
        "n_images": len(interp),
        "subtitle": f"{args.checkpoint} on {len(interp)} images of {where}",
        "per_class": per_class,
        "per_class_note": f"On the {len(interp)} images of {where}: accuracy {interp.accuracy:.4f}. A "
                          f"class's accuracy is the share of its images predicted correctly (the same number "
                          f"as its recall).",
        "most_confused": interp.most_confused()[:20],
        "vocab": interp.vocab,
        "class_names": interp.class_names,
        "settings": {"checkpoint": args.checkpoint,
                     "data": args.data or f"{folder} (the checkpoint's, default)",
                     "split": args.split or "val/ if the folder has one, else the folder itself (default)",
                     "bs": args.bs, "num_workers": args.num_workers, "top_losses": args.top_losses,
                     "tta": args.tta},
        **base_summary(model, started, round(time.perf_counter() - start, 3), argv),
        "files": ["confusion_matrix.png", "per_class.csv", "report.html", "summary.json", "top_losses.png"],
    }
    write_summary(summary, out / "summary.json")
    plots = {"Confusion matrix (rows: actual class, columns: predicted)": out / "confusion_matrix.png",
             f"Top {args.top_losses} losses: the images the model got most wrong": out / "top_losses.png"}
    write_report(summary, [], plots, out / "report.html", title=f"groundup evaluation of {args.checkpoint}")
    print(f"loss {interp.loss:.4f}, accuracy {interp.accuracy:.4f} on {len(interp)} images of {where}")
    print(format_per_class(per_class))
    print(f"wrote {out}/: {', '.join(summary['files'])}")
    return 0
