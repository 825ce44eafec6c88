"""Deprecated: the `Checkpoint` callback lives in `groundup.callbacks.checkpointing` (this path stops working in 0.3).

Renamed so that one name means one module: `groundup.checkpoint` is the checkpoint file (save,
load, read), `groundup.callbacks.checkpointing` the callback that writes one after every epoch.
"""

from groundup.deprecation import moved_names

__getattr__ = moved_names(__name__, {"Checkpoint": "groundup.callbacks.checkpointing.Checkpoint"})
