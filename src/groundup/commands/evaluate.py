"""`groundup evaluate`: confusion matrix, per-class scores and top losses of a checkpoint on labelled data."""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Sequence
from pathlib import Path

from groundup.commands.options import HelpFormatter, add_device_option, non_negative_int, positive_int
from groundup.run.build import find_data
from groundup.run.folder import base_summary, new_out_dir
from groundup.run.interpret import Interpretation, format_per_class
from groundup.run.report import write_per_class_csv, write_report, write_summary
from groundup.utils.devices import resolve_device

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
    e.add_argument("--labels", default=None, metavar="CSV",
                   help="evaluate the images a CSV under FOLDER lists, with its labels (file name, label; "
                        "space-separated tags for a multi-label model) (default: label folders)")
    e.add_argument("--bs", type=positive_int, default=64, help="batch size")
    e.add_argument("-j", "--num-workers", type=non_negative_int, default=0,
                   help="data-loading processes, 0 to load in the main process")
    e.add_argument("--top-losses", type=positive_int, default=9, metavar="K",
                   help="how many images the top-losses grid shows")
    e.add_argument("--tta", action="store_true",
                   help="flip test-time augmentation: average each image's prediction with its mirror image's")
    add_device_option(e, "evaluate")
    e.set_defaults(run=run)
    return e


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    start = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    device = resolve_device(args.device)  # checked first: a bad --device fails before any work
    folder = find_data(args.data) if args.data is not None else None
    interp = Interpretation.from_checkpoint(args.checkpoint, folder, split=args.split, bs=args.bs,
                                            num_workers=args.num_workers, device=device, tta=args.tta,
                                            labels=args.labels)
    folder = interp.folder
    out = new_out_dir(args.out, suffix="-evaluate")
    multi = interp.multi_label
    picture = "per_tag.png" if multi else "confusion_matrix.png"
    if multi:  # tags are not exclusive: no confusion matrix
        interp.plot_per_tag(out / picture)
    else:
        interp.plot_confusion_matrix(out / picture)
    interp.plot_top_losses(args.top_losses, out / "top_losses.png")
    per_class = interp.per_class()
    write_per_class_csv(per_class, out / "per_class.csv")
    model = interp.learn.unwrapped_model
    where = f"{folder}/{args.split}" if args.split else str(folder)
    if args.labels:
        where = f"{folder} listed in {args.labels}"
    summary = {
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "data_path": str(folder.resolve()),
        "metrics": {"accuracy": interp.accuracy, "loss": interp.loss,
                    **({"micro-F1": interp.fbeta(), "macro-F1": interp.fbeta(average="macro")} if multi else {})},
        "multi_label": multi,
        "n_images": len(interp),
        "subtitle": f"{args.checkpoint} on {len(interp)} images of {where}",
        "per_class": per_class,
        "per_class_note": (f"On the {len(interp)} images of {where}: accuracy_multi {interp.accuracy:.4f}, micro-F1 "
                           f"{interp.fbeta():.4f}. A tag's accuracy is the share of images whose decision on it is "
                           f"right." if multi else
                           f"On the {len(interp)} images of {where}: accuracy {interp.accuracy:.4f}. A "
                           f"class's accuracy is the share of its images predicted correctly (the same number "
                           f"as its recall)."),
        "most_confused": interp.most_confused()[:20],
        "vocab": interp.vocab,
        "class_names": interp.class_names,
        "settings": {"checkpoint": args.checkpoint,
                     "data": args.data or f"{folder} (the checkpoint's, default)",
                     "split": args.split or "val/ if the folder has one, else the folder itself (default)",
                     "bs": args.bs, "num_workers": args.num_workers, "top_losses": args.top_losses,
                     "tta": args.tta},
        **base_summary(model, started, round(time.perf_counter() - start, 3), argv),
        "files": sorted([picture, "per_class.csv", "report.html", "summary.json", "top_losses.png"]),
    }
    write_summary(summary, out / "summary.json")
    plots = {("Precision, recall and F1 of each tag" if multi else
              "Confusion matrix (rows: actual class, columns: predicted)"): out / picture,
             f"Top {args.top_losses} losses: the images the model got most wrong": out / "top_losses.png"}
    write_report(summary, [], plots, out / "report.html", title=f"groundup evaluation of {args.checkpoint}")
    f1 = f", micro-F1 {interp.fbeta():.4f} (threshold {interp.threshold:g})" if multi else ""
    print(f"loss {interp.loss:.4f}, accuracy {interp.accuracy:.4f}{f1} on {len(interp)} images of {where}")
    print(format_per_class(per_class))
    print(f"wrote {out}/: {', '.join(summary['files'])}")
    return 0
