"""groundup's messages go through Python's `logging`, under the logger named "groundup".

Everything that is not the results table or the progress bar is a log record: what a run is
about to do and where it writes, a resumed run, early stopping, saved checkpoints (debug), an
unreadable image that was skipped (warning). Each module logs to `logging.getLogger(__name__)`, a
child of "groundup", so an application routes or silences all of it in one place:

    >>> import logging
    >>> logging.getLogger("groundup").setLevel(logging.WARNING)     # or add your own handler

As a library, groundup adds no handler of its own; the command line shows the log while a command
runs (`console_logging`): info (and, with `-v`, debug) lines on stdout, warnings on stderr.
Python code that wants the same calls `setup_logging()`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["LOGGER_NAME", "console_logging", "setup_logging"]

LOGGER_NAME = "groundup"


class ConsoleHandler(logging.Handler):
    """Info and debug lines to stdout as they are; warnings and errors to stderr, as `groundup: warning: ...`.

    The streams are looked up for every record, so a redirected or captured `sys.stdout` is honoured.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                stream, line = sys.stderr, f"groundup: {record.levelname.lower()}: {message}"
            else:
                stream, line = sys.stdout, message
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own rule: a failing handler must not break the program
            self.handleError(record)


def setup_logging(verbosity: int = 0, quiet: bool = False) -> logging.Logger:
    """Show groundup's log on the console, as the command line does; return the "groundup" logger.

    Args:
        verbosity: 0 shows info and above; 1 or more (`-v`) shows debug messages too (also with `quiet`).
        quiet: show warnings and errors only (`--quiet`).

    Calling it again replaces the handler it added before (no line is printed twice).
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(ConsoleHandler())
    logger.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING if quiet else logging.INFO)
    return logger


@contextlib.contextmanager
def console_logging(verbosity: int = 0, quiet: bool = False) -> Iterator[logging.Logger]:
    """`setup_logging` for the length of a `with` block; then the logger is as it was (what each command does)."""
    logger = logging.getLogger(LOGGER_NAME)
    handlers, level = list(logger.handlers), logger.level
    try:
        yield setup_logging(verbosity, quiet)
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
