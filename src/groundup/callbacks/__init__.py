"""Callbacks: `Callback` and the events (`core`), and the callbacks groundup ships, one module each.

To write one: subclass `Callback` (from here or `groundup.callbacks.core`), define the events it
needs, and pass an instance in the Learner's `cbs`. See `groundup.learner` for the loop.
"""

from groundup.callbacks.activations import ActivationStatsCB
from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.core import (
    EVENTS,
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidateException,
)
from groundup.callbacks.distributed import DistributedCB
from groundup.callbacks.lr_finder import LRFinder, LRSuggestion
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.progress import ProgressCB
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults

__all__ = [
    "EVENTS",
    "ActivationStatsCB",
    "Callback",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CancelStepException",
    "CancelTrainException",
    "CancelValidateException",
    "Checkpoint",
    "DistributedCB",
    "LRFinder",
    "LRSuggestion",
    "MixedPrecision",
    "OneCycle",
    "ProgressCB",
    "Recorder",
    "SetupLearnerCB",
    "TrackResults",
]
