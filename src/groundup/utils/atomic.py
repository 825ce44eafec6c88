"""Writing files atomically: a reader (or a crash) sees either the old file or the whole new one.

Every file groundup writes (checkpoints, plots, the run's CSV, JSON and HTML) goes through
`atomic_write`: the bytes go to a temporary file in the same folder (same file system, so the
rename is atomic), which `os.replace` moves over the target only once it is complete.

The temporary file is named `.<name>.<random>.tmp` and created with mode 0666 less the umask,
like any other file the user makes (not `mkstemp`'s 0600), so the finished file has the
permissions the user expects. Ctrl-C and SIGTERM wait while a file is written: one that arrives
meanwhile is delivered as soon as the file is complete, so an interrupt never lands inside a writer
(torch's zip writer would turn it into an unrelated `RuntimeError`, "unexpected pos"), and a
stopped run keeps the checkpoint it was writing. A process killed mid-write leaves its temporary file behind;
`remove_stale_temp_files` clears them (a run does it when it starts or resumes). A full disk
raises `groundup.utils.disk.DiskFullError`, naming the folder and the space, with the old file intact.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from groundup.utils.disk import DiskFullError, format_size, free_space, is_disk_full

__all__ = ["atomic_write", "remove_stale_temp_files"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_-]{8,}\.tmp$")  # what `_create_temp` names a temporary file


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside `path`: (fd, its path). Mode 0666 less the umask, as `open` gives."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_urlsafe(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not find a free temporary file name", str(path.parent))


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = False,
                 **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path`; when the block ends without error, move it over `path`.

    On an error (or Ctrl-C) the temporary file is deleted and `path` is left as it was. When the
    error is a full disk (also one wrapped by the writer, as torch's zip writer does), it is
    raised as `DiskFullError` naming the folder, the space free and the space needed.

    Args:
        path: the file to write; its folder is created if needed.
        mode: "wb" or "w" (then pass e.g. `encoding="utf-8"`).
        durable: also fsync the file before the rename and the folder after it, so the new file
            survives a power cut (for checkpoints).

    Example:
        >>> with atomic_write("model.pt", durable=True) as f:
        ...     torch.save(state, f)
    """
    with _signals_held(), _write_then_replace(path, mode, durable, **open_kwargs) as f:
        yield f


@contextmanager
def _write_then_replace(path: str | os.PathLike, mode: str, durable: bool, **open_kwargs) -> Iterator[IO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise _disk_full(path, written) from e
        raise
    if durable and os.name == "posix":  # Windows cannot fsync a folder; os.replace is atomic there anyway
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block; deliver the first one that came (to the handler it would have
    reached) when the block ends. Only the main thread receives signals, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old: dict[int, object] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is None:  # installed outside Python: it could not be put back, so leave it
            continue
        old[signum] = handler
        signal.signal(signum, lambda n, frame: caught.append(n))
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if caught:
            handler = old[caught[0]]
            if callable(handler):
                handler(caught[0], None)  # Python's SIGINT handler raises KeyboardInterrupt, the CLI's SIGTERM one Terminated
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


def _disk_full(path: Path, written: int) -> DiskFullError:
    old = path.stat().st_size if path.is_file() else 0
    free = free_space(path.parent)
    have = f"{format_size(free)} free" if free is not None else "the free space is unknown"
    needs = (f"about {format_size(old)} (the size of the previous one)" if old > written
             else f"more than the {format_size(written)} written when the disk filled up")
    kept = f"the previous {path.name} is intact" if old else f"no {path.name} was written"
    return DiskFullError(f"no space left in {path.parent} to write {path.name}: {have}, it needs {needs}; {kept}. "
                         f"Free some space there, or write elsewhere")


def remove_stale_temp_files(folder: str | os.PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `folder` when a process was killed mid-write.

    Args:
        folder: the folder to clean (nothing happens if it does not exist).
        names: only the temporary files of these targets (e.g. `["model.pt", "best.pt"]`); None: all.

    Call it only where no other process is writing into `folder` at the same time (a run's own
    folder, when the run starts or resumes). Returns the files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if names is None else set(names)
    removed = []
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and (wanted is None or m["name"] in wanted) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
