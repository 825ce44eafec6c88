"""A small, dependency-free progress bar for downloads and training loops.

`ProgressBar` counts work as it is done and redraws one line at most every
`min_interval` seconds, so calling `update()` once per batch costs almost
nothing. Disabled bars (the default when output is not a terminal) print nothing.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> with ProgressBar(total=3, desc="epoch 1", file=out, enabled=True) as bar:
    ...     for _ in range(3):
    ...         bar.update()
    >>> "3/3" in out.getvalue()
    True
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Self, TypeVar

__all__ = ["ProgressBar", "format_duration", "format_size"]

T = TypeVar("T")

_BAR_WIDTH = 20
_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(num_bytes: float) -> str:
    """Format a byte count with binary prefixes: `1536` -> `'1.5 KiB'`, `99003388` -> `'94.4 MiB'`."""
    value = float(num_bytes)
    for unit in _SIZE_UNITS:
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # the loop always returns at the last unit


def format_duration(seconds: float) -> str:
    """Format seconds as `mm:ss`, or `h:mm:ss` from one hour on: `75` -> `'01:15'`."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ProgressBar:
    """Show progress through `total` units of work on one self-redrawing line.

    The line reads `desc: 45%|#########           | 45/100 it [00:03<00:04, 13.2 it/s] postfix`;
    with `unit="B"` counts and rates are shown as sizes (`42.1 MiB/94.4 MiB`, `12.0 MiB/s`).

    Args:
        total: how many units the work has, or None if unknown (then no percent or ETA).
        desc: a short label printed before the bar.
        unit: the name of one unit of work (`"it"`, `"batch"`, `"B"` for bytes).
        file: where to draw; default `sys.stderr` (looked up when the bar is made).
        enabled: draw at all? None (default) draws only when `file` is a terminal.
        min_interval: least number of seconds between two redraws.
        initial: units already done before this bar started (a resumed download);
            they count towards the percent but not towards the rate.

    Use it as a context manager (or call `close()`) so the last state is drawn and the
    line ended. To follow an iterable, use `ProgressBar.wrap(iterable)`.
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        file: IO[str] | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.1,
        *,
        initial: int = 0,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"ProgressBar total must be >= 0 or None, got {total}")
        if min_interval < 0:
            raise ValueError(f"ProgressBar min_interval must be >= 0 seconds, got {min_interval}")
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file = sys.stderr if file is None else file
        self.enabled = _is_terminal(self.file) if enabled is None else bool(enabled)
        self.min_interval = min_interval
        self.n = initial
        self.initial = initial
        self.postfix = ""
        self.closed = False
        self._start = time.monotonic()
        self._last_draw = self._start
        self._last_width = 0
        if self.enabled:
            self.refresh()

    @classmethod
    def wrap(cls, iterable: Iterable[T], total: int | None = None, **kwargs) -> Iterator[T]:
        """Yield the items of `iterable`, counting one unit per item.

        `total` defaults to `len(iterable)` when it has one; other keyword arguments go to
        `ProgressBar`. The bar is closed when the iteration ends (or the generator is closed).

        Example:
            >>> for batch in ProgressBar.wrap(range(3), desc="train", enabled=False):
            ...     pass
        """
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        with cls(total, **kwargs) as bar:
            for item in iterable:
                yield item
                bar.update()

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.monotonic() - self._start

    def update(self, n: int = 1) -> None:
        """Count `n` more units done; redraw if `min_interval` seconds have passed since the last draw."""
        self.n += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= self.min_interval:
            self._draw(now)

    def set_postfix(self, text: str) -> None:
        """Show `text` after the counters (a loss, say); drawn at the next redraw."""
        self.postfix = text
        if self.enabled:
            now = time.monotonic()
            if now - self._last_draw >= self.min_interval:
                self._draw(now)

    def write(self, text: str) -> None:
        """Print a line of `text` above the bar without garbling it (the bar is redrawn below)."""
        if not self.enabled:
            return
        self.file.write("\r" + text.ljust(self._last_width) + "\n")
        self._last_width = 0
        if not self.closed:
            self.refresh()

    def refresh(self) -> None:
        """Redraw now, whatever the time since the last draw."""
        if self.enabled and not self.closed:
            self._draw(time.monotonic())

    def close(self) -> None:
        """Draw the final state and end the line. Calling it again does nothing."""
        if self.closed:
            return
        if self.enabled:
            self._draw(time.monotonic())
            self.file.write("\n")
            self.file.flush()
        self.closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProgressBar({self.format_line()!r})"

    def format_line(self, elapsed: float | None = None) -> str:
        """The text of the bar's line, as it would be drawn after `elapsed` seconds (default: now)."""
        elapsed = self.elapsed if elapsed is None else elapsed
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: " if self.desc else ""]
        if self.total:  # a known, non-zero total gets a percent and a bar
            frac = min(max(self.n / self.total, 0.0), 1.0)
            filled = int(frac * _BAR_WIDTH)
            parts.append(f"{frac * 100:3.0f}%|{'#' * filled}{' ' * (_BAR_WIDTH - filled)}| ")
        parts.append(self._format_count())
        timing = format_duration(elapsed)
        if self.total and rate > 0:
            timing += "<" + format_duration(max(self.total - self.n, 0) / rate)
        parts.append(f" [{timing}, {self._format_rate(rate)}]")
        if self.postfix:
            parts.append(" " + self.postfix)
        return "".join(parts)

    def _format_count(self) -> str:
        if self.unit == "B":
            done = format_size(self.n)
            return done if self.total is None else f"{done}/{format_size(self.total)}"
        done = str(self.n)
        return f"{done} {self.unit}" if self.total is None else f"{done}/{self.total} {self.unit}"

    def _format_rate(self, rate: float) -> str:
        if self.unit == "B":
            return f"{format_size(rate)}/s"
        if 0 < rate < 1:  # slow steps read better as seconds per step
            return f"{1 / rate:.2f} s/{self.unit}"
        return f"{rate:.1f} {self.unit}/s"

    def _draw(self, now: float) -> None:
        line = self.format_line(now - self._start)
        # Pad with spaces so a shorter line fully covers the previous one.
        self.file.write("\r" + line.ljust(self._last_width))
        self.file.flush()
        self._last_width = len(line)
        self._last_draw = now


def _is_terminal(file: object) -> bool:
    """True if `file` says it is an interactive terminal; False for files, pipes and StringIO."""
    try:
        return bool(file.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False
