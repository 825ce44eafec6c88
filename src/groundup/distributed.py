"""Deprecated: `groundup.distributed` is now `groundup.process_group` (this name stops working in 0.3).

It was renamed so that one name means one module: `groundup.callbacks.distributed` holds
`DistributedTraining`, `groundup.process_group` the process-group helpers it uses.
"""

from groundup import process_group
from groundup.deprecation import moved_names

__getattr__ = moved_names(__name__, {name: f"groundup.process_group.{name}" for name in process_group.__all__})
