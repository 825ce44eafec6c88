"""A decoded-image cache: a uint8 memory-mapped file so every epoch after the first skips JPEG decoding.

Layout of one cache file (under `groundup_home()/cache/`):

    [ header: 64 bytes ][ checksums: 8 bytes per image ][ flags: one byte per image ][ pixels: n × H × W × 3 bytes ]

A flag is 0 (not filled yet), 1 (filled) or 2 (the source file could not be decoded).
The key in the file name hashes the image size, how images are decoded (`DECODING`, the EXIF
orientation setting) and, for every source file, its absolute path, size and modification time,
so a changed data set or a changed decoder never reads stale pixels.

Every image read from the cache is checked against its checksum (`pixel_checksum`: the image's
bytes summed as 64-bit words), once per process (`Dataset` remembers which it checked, so cached
epochs after the first cost nothing more), so pixels damaged on the disk are found: the image is
decoded again (with one warning), never trained on as it is.

Why it is safe with many writers and readers:
- The file is created complete under a temporary name, its whole size reserved on the disk
  (`os.posix_fallocate`), and published with `os.link`, which fails if the name exists: exactly
  one creator wins, the others open the winner's file. A half-created file is never visible
  under the final name.
- Each worker writes an image's pixels and checksum first and sets its flag after; readers use pixels only
  where the flag says filled. A process killed mid-write leaves the flag at 0, so that image is
  simply decoded again. Two processes filling the same image write identical bytes.
- The file is mapped MAP_SHARED, so processes see each other's writes through the page cache.
  (Ordering of the pixel and flag stores relies on the processor keeping store order visible,
  as x86-64 does; a power loss before the OS writes the pages back is not guarded against.)

What happens when the disk cannot hold it:
- A store into a memory map has no error code: if the file system cannot back a page (a sparse
  file on a full disk), the process dies of SIGBUS. So the space is reserved when the file is
  made (and for a file made by an older groundup, when it is opened), where a full disk is an
  ordinary ENOSPC. Then `DecodeCacheError` says how much space was needed and how much is free,
  the partial file is removed, and `Dataset` goes on without the cache (with one warning).
- A read-only or unwritable `GROUNDUP_HOME` is a `DecodeCacheError` too (the same warning).
- A cache file with a bad header or the wrong size was damaged: groundup made it, so it makes
  it again (with a warning), never asks the user to delete it.
- A kill while a cache file is being made leaves its temporary file (`.decoded-*.u8.<pid>.tmp`);
  the next `DecodeCache` in that folder removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from groundup.utils.disk import format_size, free_space, is_disk_full
from groundup.utils.errors import GroundupError, GroundupWarning
from groundup.utils.paths import describe_home, home_folder

MAGIC = b"GROUNDUP-DECODE-CACHE-V2"  # V2: a checksum per image
DECODING = 2  # the version of how `open_image` decodes (2: the EXIF orientation applied); part of the key
HEADER = 64
EMPTY, FILLED, BAD = 0, 1, 2


class DecodeCacheError(GroundupError, OSError):
    """The decode cache cannot be made: no space, or a folder that cannot be written. Says which, and the space.

    `advice` says what would make the cache possible (free space, another GROUNDUP_HOME).
    """

    def __init__(self, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.advice = advice


def cache_key(files: Sequence[os.PathLike | str], size: int, exif_orientation: bool = True) -> str:
    """A hash of the image size, the decoding (`DECODING`, `exif_orientation`) and each file's path, byte
    size and mtime. Paths are hashed as the bytes the file system holds, so any file name works (also one
    that is not valid UTF-8)."""
    h = hashlib.sha1(f"{size}\n{DECODING}\n{bool(exif_orientation)}\n".encode())
    for f in files:
        st = os.stat(f)
        h.update(os.fsencode(os.path.abspath(f)) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def pixel_checksum(pixels: np.ndarray) -> np.ndarray:
    """A cheap checksum of each image in `pixels` ((n, H, W, 3) uint8): its bytes summed as 64-bit words
    (32-bit words, or single bytes, where an image's size is not a multiple of 8, or of 4), wrapping around.

    A flipped byte always changes it; it is no defence against a deliberate change, only against damage.
    """
    flat = np.ascontiguousarray(pixels).reshape(len(pixels), -1)
    if flat.shape[1] % 8 == 0:
        return flat.view(np.uint64).sum(axis=1, dtype=np.uint64)
    if flat.shape[1] % 4 == 0:
        return flat.view(np.uint32).sum(axis=1, dtype=np.uint64)
    return flat.sum(axis=1, dtype=np.uint64)


class DecodeCache:
    """Decoded `size`×`size` RGB images of `files`, stored in one memory-mapped file.

    Args:
        files: the source image files (the key is computed from them).
        size: the square side length of the stored images.
        folder: where the cache file lives (default `groundup_home()/cache`).
        exif_orientation: whether the images are decoded with their EXIF orientation applied (part of
            the key: the pixels differ).

    Each process maps the file lazily on first use, so a `DecodeCache` can be handed to
    worker processes (forked or pickled) and each maps its own view.

    Raises:
        DecodeCacheError: the file cannot be made or its space reserved (a full disk, a
            read-only or unwritable folder); nothing is left behind.
    """

    def __init__(self, files: Sequence[os.PathLike | str], size: int, folder: str | os.PathLike | None = None,
                 exif_orientation: bool = True):
        self.n, self.size = len(files), size
        self._where = str(folder) if folder is not None else describe_home()
        try:
            folder = Path(folder) if folder is not None else home_folder("cache")
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._error(e, Path(folder or ".")) from e
        self.path = folder / f"decoded-{cache_key(files, size, exif_orientation)}-{self.n}x{size}.u8"
        self._pid = None
        _remove_orphaned_temp_files(folder)
        self._create()

    @property
    def nbytes(self) -> int:
        return HEADER + 9 * self.n + self.n * self.size * self.size * 3

    def _create(self) -> None:
        damage = self._damage()
        if damage is None:  # a good file exists: make sure its space is reserved (older groundups left it sparse)
            try:
                with open(self.path, "r+b") as f:
                    _reserve(f.fileno(), self.nbytes)
                return
            except FileNotFoundError:
                pass  # removed in between: make a new one
            except OSError as e:
                if is_disk_full(e):
                    self.path.unlink(missing_ok=True)  # ours, and a SIGBUS waiting to happen: do not leave it
                raise self._error(e, self.path.parent) from e
        elif damage:
            warnings.warn(f"the decode cache {self.path} is damaged ({damage}); groundup made it, so it makes it "
                          f"again", GroundupWarning, stacklevel=4)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC.ljust(HEADER, b"\0"))  # then zeros: every flag EMPTY
                f.flush()  # the header is on the file before _reserve works on its descriptor
                _reserve(f.fileno(), self.nbytes)
            if damage:
                os.replace(tmp, self.path)
            else:
                try:
                    os.link(tmp, self.path)  # publish; fails if another process won the race
                except FileExistsError:
                    pass
        except OSError as e:
            raise self._error(e, self.path.parent) from e
        finally:
            tmp.unlink(missing_ok=True)

    def _damage(self) -> str | None:
        """Why the file at `path` cannot be used: '' if there is none, None if it is fine."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(MAGIC))
                size = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            return ""
        except OSError as e:
            raise self._error(e, self.path.parent) from e
        if head != MAGIC:
            return "it does not start with the decode cache's header"
        if size != self.nbytes:
            return f"it has {size} bytes, not {self.nbytes}"
        return None

    def _error(self, e: OSError, folder: Path) -> DecodeCacheError:
        if is_disk_full(e):
            free = free_space(folder)
            have = f"{format_size(free)} free" if free is not None else "the free space is unknown"
            return DecodeCacheError(f"no room for the decode cache in {self._where}: it needs "
                                    f"{format_size(self.nbytes)} ({self.n} images of {self.size}x{self.size} "
                                    f"pixels), {have}",
                                    advice="free some space there, or set GROUNDUP_HOME to a folder with room")
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else e  # HomeNotWritableError wraps the OSError
        where = f": {cause.filename}" if cause.filename else ""
        return DecodeCacheError(f"cannot write the decode cache in {self._where} ({cause.strerror or cause}{where})",
                                advice="set GROUNDUP_HOME to a folder you can write")

    def _map(self) -> None:
        if self._pid == os.getpid():
            return
        with open(self.path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:  # _create checked it: something outside groundup changed it since
                raise DecodeCacheError(f"the decode cache {self.path} was changed by another program while in "
                                       f"use; run again (groundup then makes it afresh)")
        mm = np.memmap(self.path, dtype=np.uint8, mode="r+")
        self._sums = mm[HEADER:HEADER + 8 * self.n].view(np.uint64)
        self._flags = mm[HEADER + 8 * self.n:HEADER + 9 * self.n]
        self._pixels = mm[HEADER + 9 * self.n:].reshape(self.n, self.size, self.size, 3)
        self._pid = os.getpid()

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_sums", "_flags", "_pixels", "_pid"):
            state.pop(k, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = None

    def flags(self, idxs) -> np.ndarray:
        """The fill state (EMPTY, FILLED or BAD) of each index in `idxs`."""
        self._map()
        return self._flags[idxs]

    def read(self, idxs) -> np.ndarray:
        """Pixels of `idxs` as a new (len(idxs), size, size, 3) uint8 array (only meaningful where FILLED)."""
        self._map()
        return self._pixels[idxs]

    def damaged(self, idxs, pixels: np.ndarray) -> np.ndarray:
        """The positions in `idxs` whose `pixels` (as `read` returned them) do not match their checksum."""
        self._map()
        stored = np.asarray(self._sums)[np.asarray(idxs).reshape(-1)]  # a plain array: no memmap overhead
        return np.flatnonzero(pixel_checksum(np.asarray(pixels)) != stored)

    def forget(self, i: int) -> None:
        """Mark image `i` not filled (its pixels were damaged), so it is decoded and stored again."""
        self._map()
        self._flags[i] = EMPTY

    def write(self, i: int, pixels: np.ndarray) -> None:
        """Store image `i`: pixels and checksum first, then the flag (see the module notes on why in that order)."""
        self._map()
        self._pixels[i] = pixels
        self._sums[i] = pixel_checksum(pixels[None])[0]
        self._flags[i] = FILLED

    def mark_bad(self, i: int) -> None:
        """Remember that image `i` could not be decoded, so later epochs skip it without retrying."""
        self._map()
        self._flags[i] = BAD

    def n_filled(self) -> int:
        """How many images are stored."""
        self._map()
        return int(np.count_nonzero(self._flags == FILLED))


_CREATING = re.compile(r"^\.decoded-.+\.u8\.(?P<pid>\d+)\.tmp$")  # what `_create` names its file


def _remove_orphaned_temp_files(folder: Path) -> None:
    """Delete the temporary files of cache files whose maker was killed (its process is gone)."""
    try:
        names = list(folder.iterdir())
    except OSError:
        return
    for p in names:
        m = _CREATING.match(p.name)
        if m and not _alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                p.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _reserve(fd: int, nbytes: int) -> None:
    """Make the file `nbytes` long with every block allocated, so no later store into a map of it can fault.

    `os.posix_fallocate` allocates without writing (glibc writes zeros itself where the file system
    cannot); where Python has none (macOS), zeros are written. Either way a full disk is ENOSPC here.
    """
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, nbytes)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    have = os.fstat(fd).st_size
    os.lseek(fd, have, os.SEEK_SET)
    zeros = bytes(1 << 20)
    while have < nbytes:
        have += os.write(fd, zeros[:min(len(zeros), nbytes - have)])
