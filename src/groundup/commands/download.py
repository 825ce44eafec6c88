"""`groundup download`: download, verify and extract a registry data set."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from groundup.utils.checks import check_choice
from groundup.commands.options import HelpFormatter
from groundup.data.download import DATASETS, SHIPPED_DATASET, DownloadError, list_datasets, shipped_dataset, untar_data
from groundup.utils.disk import format_size

NAME = "download"


def add_parser(sub) -> argparse.ArgumentParser:
    dl = sub.add_parser(NAME, formatter_class=HelpFormatter, help="download a registry data set",
                        description="Download, verify and extract a data set from the registry (cached under "
                                    "$GROUNDUP_HOME, default ~/.groundup); print the folder.")
    dl.add_argument("name", nargs="?", default=None, metavar="NAME", help="the data set's name (see --list)")
    dl.add_argument("--dest", default=None, help="extract here (default: $GROUNDUP_HOME/data/NAME)")
    dl.add_argument("--list", action="store_true", help="list the registry's data sets and exit")
    dl.set_defaults(run=run)
    return dl


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.list:
        print(f"{SHIPPED_DATASET:<16} {'shipped':>10}  {shipped_dataset()}")
        for a in list_datasets():
            size = format_size(a.size) if a.size else "?"
            print(f"{a.name:<16} {size:>10}  {a.url}")
        return 0
    if args.name is None:
        raise ValueError(f"download needs a NAME (one of: {', '.join(sorted(DATASETS))}) or --list")
    check_choice("data set", args.name, sorted(DATASETS))
    try:
        print(untar_data(args.name, dest=args.dest))
    except DownloadError as e:
        raise e.with_offline_hint("set GROUNDUP_HOME, or pass --dest FOLDER, to where the data already "
                                  "is") from e
    return 0
