"""The `groundup` command line: `train`, `lr-find`, `evaluate`, `doctor`, `download`, `predict` and `export`.

    groundup train                                  # the data set shipped in the package; well under 2 minutes
    groundup train --data imagenette-160 --arch resnet --epochs 5 --lr auto
    groundup train --resume runs/20240501-093000/model.pt     # continue a run exactly where it stopped
    groundup lr-find --arch resnet
    groundup download --list
    groundup predict runs/20240501-093000/model.pt photo.jpg --top 3
    groundup evaluate runs/20240501-093000/model.pt --data test/     # confusion matrix, per-class scores
    groundup doctor runs/20240501-093000            # what went wrong in a run, and what to try next

`python -m groundup ...` is the same command (and what `torchrun -m groundup train` runs).

A run writes into its own folder (`--out`, default `runs/<date-time>`): `metrics.csv`, `steps.csv`,
`config.toml`, `summary.json`, `model.pt` (the checkpoint, after every epoch), `best.pt` (the best
epoch by `--monitor`, default the lowest validation loss), `losses.png`, `schedule.png`,
`confusion_matrix.png`, `top_losses.png`, `per_class.csv` and `report.html`. An `--out` folder that already
holds files is refused (exit status 2), unless it is the folder of the run being resumed: nothing
an earlier run wrote is ever overwritten by a new one.

Mistakes in what was passed (a missing folder, an unknown architecture, a non-positive lr, an
unreadable image, a truncated checkpoint, ...) and failures groundup knows the cause of (a full disk,
a dead loader worker, a NaN loss: a `groundup.utils.errors.GroundupError`) print one line,
`groundup: error: ...`, and exit with status 2. Anything else is unexpected: it prints one line
naming the exception and the file holding its full traceback (in the run folder, or under
`GROUNDUP_HOME/tmp`), and exits with status 1. Set `GROUNDUP_DEBUG=1` to see the traceback instead.
Warnings groundup worked around print as `groundup: warning: ...`. Each subcommand lives in its own module under `groundup.commands`;
what a training run does (build the learner, fit, write the run folder) lives in `groundup.run`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from groundup._version import __version__
from groundup.commands import COMMANDS
from groundup.commands.options import HelpFormatter
from groundup.utils.errors import (
    GroundupError,
    GroundupWarning,
    Terminated,
    write_traceback,
)
from groundup.utils.memory import keep_freed_memory

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, `groundup: error: ...`, exit status 2 (as every other input error)."""

    def error(self, message: str):
        self.exit(2, f"groundup: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `groundup` argument parser with one subcommand per module of `groundup.commands`."""
    parser = _Parser(prog="groundup", formatter_class=HelpFormatter,
                     description="groundup: train image classifiers with a deep-learning library you can read "
                                 "end to end. Errors exit with status 2.")
    parser.add_argument("--version", action="version", version=f"groundup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Turn SIGTERM into `Terminated` while a command runs (main thread only; the old handler comes back after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `groundup` command with `argv` (default `sys.argv[1:]`); return the exit status.

    Run as the program itself (no `argv` given), the process keeps freed tensor memory for reuse
    (`groundup.utils.memory.keep_freed_memory`: about a fifth faster CPU epochs); called from Python with
    an `argv`, it leaves the caller's process settings alone.
    """
    if argv is None:
        keep_freed_memory()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings(), _terminate_as_interrupt():
            warnings.showwarning = _show_warning
            return args.run(args, argv)
    except KeyboardInterrupt as e:  # one line: what stopped it, and (a run) how to continue
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        hint = getattr(e, "resume_hint", None)
        print(f"groundup: {how}{'; ' + hint if hint else ''}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:  # `groundup predict ... | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except (GroundupError, ValueError, TypeError, OSError) as e:  # CheckpointError, CorruptImageError, ...
        if os.environ.get("GROUNDUP_DEBUG"):
            raise
        print(f"groundup: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # unexpected (a bug, or a cause groundup does not know): one line, the traceback in a file
        if os.environ.get("GROUNDUP_DEBUG"):
            raise
        try:
            where = f"the full traceback is in {write_traceback(e)}"
        except OSError:
            import traceback

            traceback.print_exc()
            where = "the traceback is above"
        print(f"groundup: error: unexpected {type(e).__name__}: {_one_line(e)} ({where}; set GROUNDUP_DEBUG=1 "
              f"to see it here; if it looks like a bug in groundup, please report it with that traceback)",
              file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """groundup's own warnings as one line, `groundup: warning: ...`; any other warning as Python shows it."""
    if issubclass(category, GroundupWarning):
        print(f"groundup: warning: {' '.join(str(message).split())}", file=file or sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=file or sys.stderr)

