"""groundup: a deep-learning training library you can read end to end, built on PyTorch tensors.

The public names follow the "Learner from scratch" walkthrough; each lives in the module named
after its concept (`groundup.data.loader.DataLoader`, `groundup.learner.Learner`, ...) and is
re-exported here.
"""


from groundup._version import __version__
from groundup.callbacks import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidateException,
    Checkpoint,
    DistributedTraining,
    LRFinder,
    LRSuggestion,
    MixedPrecision,
    NonFiniteLossError,
    OneCycle,
    ProgressBar,
    Recorder,
    SetupLearnerCB,
    TerminateOnNaN,
    TrackActivations,
    TrackResults,
)
from groundup.data import (
    DataLoader,
    DataLoaders,
    Dataset,
    ImageDataLoaders,
    Normalize,
    Preprocessing,
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
from groundup.deprecation import moved_names
from groundup.errors import GroundupError
from groundup.learner import Learner
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
    "Checkpoint",
    "ConvLayer",
    "DataLoader",
    "DataLoaders",
    "Dataset",
    "DistributedTraining",
    "Flatten",
    "GroundupError",
    "Hooks",
    "ImageDataLoaders",
    "LRFinder",
    "LRSuggestion",
    "Learner",
    "Linear",
    "MixedPrecision",
    "Module",
    "NonFiniteLossError",
    "Normalize",
    "OneCycle",
    "Parameter",
    "Preprocessing",
    "ProgressBar",
    "ReLU",
    "Recorder",
    "Sequential",
    "SetupLearnerCB",
    "TerminateOnNaN",
    "TrackActivations",
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

# Names before 0.2: callbacks are named for what they do, with no suffix (SetupLearnerCB keeps the walkthrough's).
__getattr__ = moved_names(__name__, {"ProgressCB": "groundup.callbacks.progress.ProgressBar",
                                     "ActivationStatsCB": "groundup.callbacks.activations.TrackActivations",
                                     "DistributedCB": "groundup.callbacks.distributed.DistributedTraining"})
