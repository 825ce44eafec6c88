"""groundup: a deep-learning training library you can read end to end, built on PyTorch tensors.

The public names follow the "Learner from scratch" walkthrough; each lives in the module named
after its concept (`groundup.data.loader.DataLoader`, `groundup.learner.Learner`, ...) and is
re-exported here.
"""


__version__ = "0.1.0"

from groundup.callbacks.activations import ActivationStatsCB
from groundup.callbacks.lr_finder import LRFinder, LRSuggestion
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.progress import ProgressCB
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.data import (
    DataLoader,
    DataLoaders,
    Dataset,
    Normalize,
    batch_stats,
    collate,
    get_image_files,
    grandparent_split,
    parent_label,
    show_batch,
    to_nchw,
    untar_data,
    val2idx,
)
from groundup.learner import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidateException,
    Learner,
)
from groundup.losses import cross_entropy, log_softmax, logsumexp, nll
from groundup.metrics import accuracy
from groundup.nn import (
    ActivationStats,
    AdaptivePool,
    BatchNorm,
    ConvLayer,
    Flatten,
    Hooks,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    resnet,
    simple_cnn,
)
from groundup.optim import SGD, Adam

__all__ = [
    "SGD",
    "ActivationStats",
    "ActivationStatsCB",
    "Adam",
    "AdaptivePool",
    "BatchNorm",
    "Callback",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CancelStepException",
    "CancelTrainException",
    "CancelValidateException",
    "ConvLayer",
    "DataLoader",
    "DataLoaders",
    "Dataset",
    "Flatten",
    "Hooks",
    "LRFinder",
    "LRSuggestion",
    "Learner",
    "Linear",
    "MixedPrecision",
    "Module",
    "Normalize",
    "OneCycle",
    "Parameter",
    "ProgressCB",
    "ReLU",
    "Recorder",
    "Sequential",
    "SetupLearnerCB",
    "TrackResults",
    "__version__",
    "accuracy",
    "batch_stats",
    "collate",
    "cross_entropy",
    "get_image_files",
    "grandparent_split",
    "log_softmax",
    "logsumexp",
    "nll",
    "parent_label",
    "resnet",
    "show_batch",
    "simple_cnn",
    "to_nchw",
    "untar_data",
    "val2idx",
]
