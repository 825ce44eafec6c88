"""Old spellings that keep working for one release, with a `DeprecationWarning` that names the new one."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["REMOVED_IN", "renamed"]

REMOVED_IN = "0.3"  # the release in which the old spellings below stop working


def renamed(where: str, old: str, new: str, value: Any = None, stacklevel: int = 3) -> Any:
    """Warn that `old` is now spelled `new` (in `where`) and return `value` unchanged."""
    warnings.warn(f"{where}: '{old}' is now called '{new}'; '{old}' stops working in groundup {REMOVED_IN}",
                  DeprecationWarning, stacklevel=stacklevel)
    return value
