"""Deprecated module (removed in 0.3): progress bars are tqdm's now.

The `ProgressBar` callback (`groundup.callbacks.progress`) draws them during `fit`, and
`untar_data` while downloading (`tqdm.auto`, so a notebook gets a widget). The hand-written
`ProgressBar` class and `format_duration` that lived here are gone: importing them raises an
ImportError that names the tqdm replacement. `format_size` moved to `groundup.data.download`.
"""

from __future__ import annotations

from groundup.deprecation import moved_names

_moved = moved_names(__name__, {"format_size": "groundup.data.download.format_size"})

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
    return _moved(name)
