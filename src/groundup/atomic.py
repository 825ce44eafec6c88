"""Writing files atomically: a reader (or a crash) sees either the old file or the whole new one.

Every file groundup writes (checkpoints, plots, the run's CSV, JSON and HTML) goes through
`atomic_write`: the bytes go to a temporary file in the same folder (same file system, so the
rename is atomic), which `os.replace` moves over the target only once it is complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = False,
                 **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path`; when the block ends without error, move it over `path`.

    On an error (or Ctrl-C) the temporary file is deleted and `path` is left as it was.

    Args:
        path: the file to write; its folder is created if needed.
        mode: "wb" or "w" (then pass e.g. `encoding="utf-8"`).
        durable: also fsync the file before the rename and the folder after it, so the new file
            survives a power cut (for checkpoints).

    Example:
        >>> with atomic_write("model.pt", durable=True) as f:
        ...     torch.save(state, f)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable and os.name == "posix":  # Windows cannot fsync a folder; os.replace is atomic there anyway
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
