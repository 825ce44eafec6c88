"""Where groundup keeps its files: downloads, extracted data sets and decode caches."""

from __future__ import annotations

import os
from pathlib import Path


def groundup_home() -> Path:
    """The cache root: `$GROUNDUP_HOME` if set, else `~/.groundup`. Created on first use."""
    home = Path(os.environ.get("GROUNDUP_HOME") or Path.home() / ".groundup").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
