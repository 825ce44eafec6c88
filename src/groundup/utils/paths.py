"""Where groundup keeps its files: downloads, extracted data sets and decode caches."""

from __future__ import annotations

import os
from pathlib import Path

from groundup.utils.errors import GroundupError

__all__ = ["HomeNotWritableError", "describe_home", "groundup_home", "home_folder"]


class HomeNotWritableError(GroundupError, OSError):
    """`GROUNDUP_HOME` (or a folder in it) cannot be created or written; the message names the variable and the fix."""


def _home() -> Path:
    return Path(os.environ.get("GROUNDUP_HOME") or Path.home() / ".groundup").expanduser()


def describe_home() -> str:
    """`GROUNDUP_HOME=<path>`, or `~/.groundup` (the default) with a word on how to move it: for messages."""
    if os.environ.get("GROUNDUP_HOME"):
        return f"GROUNDUP_HOME={_home()}"
    return f"{_home()} (the default GROUNDUP_HOME)"


def groundup_home() -> Path:
    """The cache root: `$GROUNDUP_HOME` if set, else `~/.groundup`. Created on first use.

    Raises:
        HomeNotWritableError: the folder cannot be created (naming GROUNDUP_HOME and the fix).
    """
    return _make(_home())


def home_folder(name: str) -> Path:
    """The folder `name` inside `groundup_home()` (`cache`, `archives`, `data`, `tmp`), created if needed.

    Raises:
        HomeNotWritableError: it cannot be created: a read-only or unwritable GROUNDUP_HOME.
    """
    return _make(groundup_home() / name)


def _make(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HomeNotWritableError(
            f"cannot create {folder} in {describe_home()}: {e.strerror or e}; set GROUNDUP_HOME to a folder you "
            f"can write (it holds downloads and decode caches)") from e
    return folder
