"""What a callback is: the `Callback` base class, the event names, and the Cancel exceptions.

This module imports nothing else of groundup: the Learner, every callback and the code that
runs training all build on it, so it sits at the bottom of the house.

A callback is a plain class that defines methods named after the events it needs (see `EVENTS`
and `groundup.learner` for where each fires). It stops or skips work by raising one of the
Cancel exceptions below; each says where training resumes.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "EVENTS",
    "Callback",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CancelStepException",
    "CancelTrainException",
    "CancelValidateException",
    "event_methods",
]

EVENTS = (
    "before_fit", "before_epoch", "before_train", "before_validate", "before_batch",
    "after_pred", "after_loss", "after_backward", "after_step", "after_batch",
    "after_train", "after_validate", "after_epoch", "after_fit",
)  # fmt: skip


class CancelFitException(Exception):
    """Stop training now. `after_fit` still runs; `fit` returns normally."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch (training and validation). `after_epoch` runs; the next epoch starts."""


class CancelTrainException(Exception):
    """Skip the rest of this training pass. `after_train` runs; validation follows."""


class CancelValidateException(Exception):
    """Skip the rest of this validation pass. `after_validate` runs; then `after_epoch`."""


class CancelBatchException(Exception):
    """Skip the rest of this batch (e.g. raised in `after_loss`: no backward, no step).

    `after_batch` still runs; training resumes with the next batch.
    """


class CancelStepException(Exception):
    """Skip this batch's optimizer step (raised in `after_backward`). `zero_grad` and `after_batch` still run."""


class Callback:
    """A plain class that defines only the events it needs (`before_fit`, `after_loss`, ...).

    - `order` (int, lower runs first) decides the order among callbacks for every event.
    - `self.learn` is the Learner (`self.learner` too, as the walkthrough spells it). Reading
      learner state through the callback works as in the walkthrough (`self.model`, `self.loss`,
      `self.opt`, `self.num`, ...), but a write must go through the learner (`self.learn.lr = 0.1`):
      writing `self.lr = 0.1` after the callback was added to a learner is an error, since it
      would silently set the callback's attribute instead.
    - Stop or skip work by raising a Cancel* exception, never by setting flags.
    - A callback with state worth saving in a checkpoint implements `state_dict()` and
      `load_state_dict()`.
    - `during_lr_find = False` sets the callback aside while `Learner.lr_find` trains: callbacks
      that keep or report a run's results (`TrackResults`, `Recorder`, `Checkpoint`) do, since the
      finder's batches are no part of the results.
    """

    order: int = 0
    during_lr_find: bool = True  # see the docstring
    learn: Any = None  # the Learner, set by `Learner.add_cb`

    @property
    def learner(self) -> Any:
        """The Learner this callback belongs to (the walkthrough's name for `self.learn`)."""
        return self.learn

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: fall back to the learner's state (reads only).
        learn = self.__dict__.get("learn")
        if learn is not None and not name.startswith("__"):
            return getattr(learn, name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        learn = self.__dict__.get("learn")
        if (learn is not None and name != "learn" and name not in self.__dict__
                and not hasattr(type(self), name) and hasattr(learn, name)):
            raise AttributeError(
                f"{type(self).__name__}: 'self.{name} = ...' would shadow the learner's attribute "
                f"{name!r} instead of changing it; write 'self.learn.{name} = ...'")
        object.__setattr__(self, name, value)

    @property
    def name(self) -> str:
        """Snake-case class name without a 'CB'/'Callback' suffix: `TrackResults` → `track_results`."""
        n = re.sub(r"(CB|Callback)$", "", type(self).__name__) or type(self).__name__
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", n).lower()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def event_methods(cb: Callback) -> list[str]:
    """The events `cb` handles; a `before_*`/`after_*` method that names no event is an error (a typo)."""
    names = [n for n in dir(type(cb)) if re.match(r"(before|after)_", n) and callable(getattr(cb, n))]
    unknown = [n for n in names if n not in EVENTS]
    if unknown:
        raise ValueError(f"no callback event {unknown[0]!r} ({type(cb).__name__}.{unknown[0]}); "
                         f"valid events: {', '.join(EVENTS)}")
    return names
