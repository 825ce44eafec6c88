"""Callbacks: `Callback` and the events (`core`), and the callbacks groundup ships, one module each.

To write one: subclass `Callback` (from here or `groundup.callbacks.core`), define the events it
needs, and pass an instance in the Learner's `cbs`. See `groundup.learner` for the loop.
"""

from groundup.callbacks.activations import TrackActivations
from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.compile import CompileModel
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
from groundup.callbacks.distributed import DistributedTraining
from groundup.callbacks.early_stopping import EarlyStopping
from groundup.callbacks.ema import EMA
from groundup.callbacks.gradient_accumulation import GradientAccumulation
from groundup.callbacks.gradient_clipping import GradientClipping
from groundup.callbacks.lr_finder import LRFinder, LRSuggestion
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.progress import ProgressBar
from groundup.callbacks.progressive_resize import ProgressiveResize
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.step_logger import StepLogger
from groundup.callbacks.tensorboard import TensorBoardLogger
from groundup.callbacks.terminate_on_nan import NonFiniteLossError, TerminateOnNaN
from groundup.callbacks.tracking import TrackResults
from groundup.callbacks.validate_every import ValidateEvery

__all__ = [
    "EMA",
    "EVENTS",
    "Callback",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CancelStepException",
    "CancelTrainException",
    "CancelValidateException",
    "Checkpoint",
    "CompileModel",
    "DistributedTraining",
    "EarlyStopping",
    "GradientAccumulation",
    "GradientClipping",
    "LRFinder",
    "LRSuggestion",
    "MixedPrecision",
    "NonFiniteLossError",
    "OneCycle",
    "ProgressBar",
    "ProgressiveResize",
    "Recorder",
    "SetupLearnerCB",
    "StepLogger",
    "TensorBoardLogger",
    "TerminateOnNaN",
    "TrackActivations",
    "TrackResults",
    "ValidateEvery",
]
