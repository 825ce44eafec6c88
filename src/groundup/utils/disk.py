"""Disk space: sizes for people, how much is free, and the error groundup raises when a disk is full.

A full disk shows up in many shapes: `OSError(ENOSPC)` from a write or a flush, the same
wrapped by another library (torch's zip writer raises a `RuntimeError` while handling it), or
`EDQUOT` when a quota is used up. `is_disk_full` looks through an exception's chain for any of
them, so every writer reports one `DiskFullError` that names the folder and the space.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from groundup.utils.errors import GroundupError

__all__ = ["DiskFullError", "format_size", "free_space", "is_disk_full"]

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def format_size(num_bytes: float) -> str:
    """Format a byte count with binary prefixes: `1536` -> `'1.5 KiB'`, `99003388` -> `'94.4 MiB'`."""
    value = float(num_bytes)
    for unit in _SIZE_UNITS:
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # the loop always returns at the last unit


def free_space(folder: str | os.PathLike) -> int | None:
    """Bytes free for this user on the file system of `folder` (or of its nearest existing parent); None if unknown."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


class DiskFullError(GroundupError, OSError):
    """No space left (or the disk quota used up) where groundup was writing; the message names the folder and the space.

    What was being written is left as it was before (atomic writes), or removed (a cache).
    Its `errno` is ENOSPC, as for the OSError it stands for.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC  # set after: OSError(errno, text) would print as "[Errno 28] text"


def is_disk_full(exc: BaseException | None) -> bool:
    """True if `exc`, or an exception it was raised from or while handling, is ENOSPC, EDQUOT or EFBIG."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in _FULL):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
