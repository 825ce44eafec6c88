"""What groundup raises when a user can fix the problem, and where it writes the traceback of anything else.

`GroundupError` is the base class of errors whose cause groundup knows and a user can act on:
a damaged checkpoint, an undecodable image, a full disk, a dead loader worker, a NaN loss, a
failed download. Each message names the problem and what to do. The classes keep the built-in
base they had before (`CheckpointError` is still a `ValueError`, `WorkerError` a `RuntimeError`,
`DownloadError` an `OSError`), so existing `except` clauses go on working.

The command line prints a `GroundupError` (and the ValueError, TypeError or OSError of a bad
input) as one line, `groundup: error: ...`, with exit status 2. Anything else is a bug or a
surprise: it prints one line naming the exception and the file `write_traceback` put the full
traceback in (the run folder when there is one, else `GROUNDUP_HOME/tmp`), with exit status 1.

This module imports nothing of groundup, so every other module may import it.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import traceback
from pathlib import Path

__all__ = ["GroundupError", "GroundupWarning", "Terminated", "note_run_dir", "write_traceback"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, a scheduler's stop, torchrun stopping its ranks), raised where the command is, as
    Ctrl-C's KeyboardInterrupt is, so a run stops the same way: its last finished epoch kept, one line saying
    how to continue (the command line turns SIGTERM into it)."""


class GroundupError(Exception):
    """An error a user can fix; the message names the problem and what to do (`groundup`: one line, exit 2)."""


class GroundupWarning(UserWarning):
    """Something went wrong that groundup worked around (e.g. training without the decode cache); says what."""


_RUN_DIR = "groundup_run_dir"  # the attribute `note_run_dir` sets on an exception


def note_run_dir(exc: BaseException, run_dir: str | os.PathLike) -> None:
    """Remember on `exc` the run folder it escaped from, so its traceback is written there (first note wins)."""
    if getattr(exc, _RUN_DIR, None) is None:
        try:
            setattr(exc, _RUN_DIR, Path(run_dir))
        except AttributeError:  # an exception type without a __dict__: the traceback goes to GROUNDUP_HOME/tmp
            pass


def _home_tmp() -> Path:
    # Read the variable here rather than through groundup.utils.paths: this module stays a leaf.
    home = Path(os.environ.get("GROUNDUP_HOME") or Path.home() / ".groundup").expanduser()
    return home / "tmp"


def write_traceback(exc: BaseException) -> Path:
    """Write `exc`'s full traceback to a file and return its path.

    The file is `traceback.txt` in the run folder noted on `exc` (see `note_run_dir`), else
    `GROUNDUP_HOME/tmp/traceback-<date-time>-<pid>.txt`, else the same name in the system's
    temporary folder when neither can be written.
    """
    text = "".join(traceback.format_exception(exc))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidates = []
    run_dir = getattr(exc, _RUN_DIR, None)
    if run_dir is not None:
        candidates.append(Path(run_dir) / "traceback.txt")
    name = f"traceback-{stamp}-{os.getpid()}.txt"
    candidates += [_home_tmp() / name, Path(tempfile.gettempdir()) / name]
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    raise OSError(f"could not write the traceback to any of: {', '.join(map(str, candidates))}")
