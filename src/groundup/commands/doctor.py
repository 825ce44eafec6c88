"""`groundup doctor`: the diagnosis of a finished run, from what its folder holds (see `groundup.run.doctor`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from groundup.commands.options import HelpFormatter
from groundup.run.checkup import checkup_folder
from groundup.run.doctor import format_diagnosis

NAME = "doctor"


def add_parser(sub) -> argparse.ArgumentParser:
    d = sub.add_parser(NAME, formatter_class=HelpFormatter, help="say what went wrong in a run and what to try",
                       description="Read a run folder (metrics.csv, steps.csv, summary.json, config.toml, model.pt "
                                   "and the data it trained on, each where present) and print the diagnosis: "
                                   "each finding with its evidence and one thing to try, then what could not be "
                                   "checked. Works on runs made before groundup had a doctor.")
    d.add_argument("run_dir", metavar="RUN_DIR", help="the folder a groundup train run wrote")
    d.add_argument("--json", action="store_true", help="print the findings as JSON (summary.json's `diagnosis`)")
    d.set_defaults(run=run)
    return d


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    checkup, _ = checkup_folder(args.run_dir)
    if args.json:
        print(json.dumps(checkup.to_summary(), indent=2, default=str))
    else:
        print(format_diagnosis(checkup.findings, checkup.not_checked))
        print(f"  (the checks took {checkup.seconds:.2f} s)")
    return 0
