"""A random split that stays put: each file's side is a hash of its name and the seed.

Shuffling a list and cutting it moves files between the sides whenever a file is added or removed
(every later position shifts). Hashing each name with the seed decides every file on its own: the
same file always lands on the same side for a given seed, however many files join the set, and
about `valid_pct` of any set lands in validation.

Example:
    >>> is_valid = hash_split(["a.jpg", "b.jpg", "c.jpg"], valid_pct=0.2, seed=42)   # bool array
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from groundup.utils.checks import check_number

__all__ = ["DEFAULT_VALID_PCT", "hash_split", "split_fraction"]

DEFAULT_VALID_PCT = 0.2  # the share of a set without a validation part that is held out for validation


def split_fraction(name: str, seed: int) -> float:
    """A number in [0, 1) fixed by `name` and `seed` alone (the first 8 bytes of a BLAKE2b hash)."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def hash_split(names: Sequence[str], valid_pct: float, seed: int = 0) -> np.ndarray:
    """`is_valid` for each name: True where `split_fraction(name, seed) < valid_pct`.

    Args:
        names: a stable name per file (the path relative to the data folder, or the CSV's file name).
        valid_pct: the share for validation, in (0, 1).
        seed: another seed, another split.
    """
    check_number("hash_split", "valid_pct", valid_pct, 0.0, 1.0, low_inclusive=False)
    return np.array([split_fraction(str(n), seed) < valid_pct for n in names], dtype=bool)
