"""`format_size`: byte counts for people (`groundup download --list`, download errors).

Progress bars are tqdm's: `ProgressCB` draws them during `fit`, `untar_data` while downloading
(`tqdm.auto`, so a notebook gets a widget). The hand-written `ProgressBar` and `format_duration`
that lived here are gone; importing them raises an ImportError that names the tqdm replacement.

Example:
    >>> format_size(99_003_388)
    '94.4 MiB'
"""

from __future__ import annotations

__all__ = ["format_size"]

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(num_bytes: float) -> str:
    """Format a byte count with binary prefixes: `1536` -> `'1.5 KiB'`, `99003388` -> `'94.4 MiB'`."""
    value = float(num_bytes)
    for unit in _SIZE_UNITS:
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # the loop always returns at the last unit


# Removed names and what replaces them. Importing one raises rather than warns: an alias to tqdm
# would not take the old arguments (`enabled`, `min_interval`, `set_postfix(text)`, `wrap`), so it
# would only fail later and less clearly. ImportError, not AttributeError, because for
# `from groundup.progress import ProgressBar` Python replaces an AttributeError's message with its own.
_REMOVED = {
    "ProgressBar": "use tqdm: `from tqdm.auto import tqdm`, then tqdm(iterable) or tqdm(total=..., desc=..., "
                   "unit=..., file=..., disable=not enabled, mininterval=min_interval, initial=...); "
                   "set_postfix(text) is set_postfix_str(text)",
    "format_duration": "use tqdm.tqdm.format_interval(seconds), which formats the same way ('01:15', '1:01:02')",
}


def __getattr__(name: str):
    if name in _REMOVED:
        raise ImportError(f"groundup.progress.{name} was removed in favour of tqdm; {_REMOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
