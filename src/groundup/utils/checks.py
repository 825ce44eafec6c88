"""Checks of user input that every constructor shares: one wording for each kind of mistake.

Each raises ValueError naming who was called (`owner`), the argument, what it wants and what it
got, e.g. `DataLoader: bs must be a positive integer, got 0`. A bool is refused where a number is
wanted (`True` is an int in Python, but never a sensible batch size).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["check_choice", "check_int", "check_number"]


def _who(owner: str, name: str) -> str:
    return f"{owner}: {name}" if owner else name


def check_int(owner: str, name: str, value: Any, low: int = 1) -> int:
    """`value` if it is an int >= `low`, else ValueError (`owner` may be "" for a command-line flag)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        wanted = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{_who(owner, name)} must be {wanted}, got {value!r}")
    return value


def check_number(owner: str, name: str, value: Any, low: float = 0.0, high: float | None = None,
                 low_inclusive: bool = True) -> float:
    """`value` if it is a finite number in [low, high) (or (low, high) without `low_inclusive`), else ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and (high is None or value < high)
    if not ok:
        if high is None:
            bound = f"{'>=' if low_inclusive else '>'} {low:g}"
        else:
            bound = f"in {'[' if low_inclusive else '('}{low:g}, {high:g})"
        raise ValueError(f"{_who(owner, name)} must be a finite number {bound}, got {value!r}")
    return value


def check_choice(what: str, value: Any, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices`, else ValueError listing them (with the closest as a hint)."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown {what} {value!r}{hint}; choose from: {', '.join(choices)}")
    return value
