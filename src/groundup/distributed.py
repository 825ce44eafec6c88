"""Deprecated: `groundup.distributed` is now `groundup.process_group` (this name stops working in 0.3).

It was renamed so that one name means one module: `groundup.callbacks.distributed` holds
`DistributedCB`, `groundup.process_group` the process-group helpers it uses.
"""

from __future__ import annotations

import groundup.process_group as _new
from groundup.deprecation import renamed


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return renamed("groundup.distributed", f"groundup.distributed.{name}", f"groundup.process_group.{name}",
                   getattr(_new, name))
