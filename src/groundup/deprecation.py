"""Old spellings that keep working for one release, with a `DeprecationWarning` that names the new one."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["REMOVED_IN", "moved_names", "renamed"]

REMOVED_IN = "0.3"  # the release in which the old spellings below stop working


def renamed(where: str, old: str, new: str, value: Any = None, stacklevel: int = 3) -> Any:
    """Warn that `old` is now spelled `new` (in `where`) and return `value` unchanged."""
    warnings.warn(f"{where}: '{old}' is now called '{new}'; '{old}' stops working in groundup {REMOVED_IN}",
                  DeprecationWarning, stacklevel=stacklevel)
    return value


def moved_names(module: str, moves: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` serving names that moved: `{old name: "new.module.new_name"}`.

    Each old name still works, with a `DeprecationWarning` naming the new one; any other unknown
    name is the usual AttributeError.
    """
    def __getattr__(name: str) -> Any:
        if name not in moves:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, new_name = moves[name].rsplit(".", 1)
        value = getattr(importlib.import_module(new_module), new_name)
        return renamed(module, f"{module}.{name}", f"{new_module}.{new_name}", value)
    return __getattr__
