"""A decoded-image cache: a uint8 memory-mapped file so every epoch after the first skips JPEG decoding.

Layout of one cache file (under `groundup_home()/cache/`):

    [ header: 64 bytes ][ flags: one byte per image ][ pixels: n × H × W × 3 bytes ]

A flag is 0 (not filled yet), 1 (filled) or 2 (the source file could not be decoded).
The key in the file name hashes the image size and, for every source file, its absolute path,
size and modification time, so a changed data set never reads stale pixels.

Why it is safe with many writers and readers:
- The file is created complete (a sparse file of the final size) under a temporary name and
  published with `os.link`, which fails if the name exists: exactly one creator wins, the others
  open the winner's file. A half-created file is never visible under the final name.
- Each worker writes an image's pixels first and sets its flag after; readers use pixels only
  where the flag says filled. A process killed mid-write leaves the flag at 0, so that image is
  simply decoded again. Two processes filling the same image write identical bytes.
- The file is mapped MAP_SHARED, so processes see each other's writes through the page cache.
  (Ordering of the pixel and flag stores relies on the processor keeping store order visible,
  as x86-64 does; a power loss before the OS writes the pages back is not guarded against.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from groundup.paths import groundup_home

MAGIC = b"GROUNDUP-DECODE-CACHE-V1"
HEADER = 64
EMPTY, FILLED, BAD = 0, 1, 2


def cache_key(files: Sequence[os.PathLike | str], size: int) -> str:
    """A hash of the image size and each file's path, byte size and mtime."""
    h = hashlib.sha1(f"{size}\n".encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


class DecodeCache:
    """Decoded `size`×`size` RGB images of `files`, stored in one memory-mapped file.

    Args:
        files: the source image files (the key is computed from them).
        size: the square side length of the stored images.
        folder: where the cache file lives (default `groundup_home()/cache`).

    Each process maps the file lazily on first use, so a `DecodeCache` can be handed to
    worker processes (forked or pickled) and each maps its own view.
    """

    def __init__(self, files: Sequence[os.PathLike | str], size: int, folder: str | os.PathLike | None = None):
        self.n, self.size = len(files), size
        folder = Path(folder) if folder is not None else groundup_home() / "cache"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"decoded-{cache_key(files, size)}-{self.n}x{size}.u8"
        self._pid = None
        self._create()

    @property
    def nbytes(self) -> int:
        return HEADER + self.n + self.n * self.size * self.size * 3

    def _create(self) -> None:
        if self.path.exists() and self.path.stat().st_size == self.nbytes:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC.ljust(HEADER, b"\0"))
                f.truncate(self.nbytes)  # sparse: zero flags, pixels allocated as they are written
            try:
                os.link(tmp, self.path)  # publish; fails if another process won the race
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
        if self.path.stat().st_size != self.nbytes:
            raise RuntimeError(f"decode cache {self.path} has the wrong size; delete it and retry")

    def _map(self) -> None:
        if self._pid == os.getpid():
            return
        with open(self.path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise RuntimeError(f"{self.path} is not a groundup decode cache; delete it and retry")
        mm = np.memmap(self.path, dtype=np.uint8, mode="r+")
        self._flags = mm[HEADER:HEADER + self.n]
        self._pixels = mm[HEADER + self.n:].reshape(self.n, self.size, self.size, 3)
        self._pid = os.getpid()

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_flags", "_pixels", "_pid"):
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

    def write(self, i: int, pixels: np.ndarray) -> None:
        """Store image `i`: pixels first, then the flag (see the module notes on why in that order)."""
        self._map()
        self._pixels[i] = pixels
        self._flags[i] = FILLED

    def mark_bad(self, i: int) -> None:
        """Remember that image `i` could not be decoded, so later epochs skip it without retrying."""
        self._map()
        self._flags[i] = BAD

    def n_filled(self) -> int:
        """How many images are stored."""
        self._map()
        return int(np.count_nonzero(self._flags == FILLED))
