"""The `Learner`: the training loop, its callback events, and the Cancel exceptions (walkthrough steps 9-12).

The loop, with the event fired at each step:

    fit(n_epochs):                      before_fit
      for epoch:                        before_epoch
        train pass:                     before_train
          for batch in dls.train:       before_batch
            preds = model(xb)           after_pred
            loss = loss_func(preds, yb) after_loss
            loss.backward()             after_backward
            opt.step()                  after_step
            opt.zero_grad()             after_batch
                                        after_train
        validation pass (no grad):      before_validate ... (batches: pred, loss) ... after_validate
                                        after_epoch
                                        after_fit   (always: after a cancel, an error or Ctrl-C too)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from groundup.optim import SGD

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
    - `self.learn` is the Learner. Reading learner state through the callback works as in the
      walkthrough (`self.model`, `self.loss`, `self.opt`, ...), but a write must go through the
      learner (`self.learn.lr = 0.1`): writing `self.lr = 0.1` after the callback was added to a
      learner is an error, since it would silently set the callback's attribute instead.
    - `self.learner` is the walkthrough's name for `self.learn` (`self.learner.lr = 1e-6` works).
    - Stop or skip work by raising a Cancel* exception, never by setting flags.
    - A callback with state worth saving in a checkpoint implements `state_dict()` and
      `load_state_dict()`.
    """

    order: int = 0
    learn: Learner | None = None

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
    def learner(self) -> Learner | None:
        """The walkthrough's name for `self.learn`: `self.learner.lr = 1e-6` changes the learner's lr."""
        return self.learn

    @learner.setter
    def learner(self, learn: Learner | None) -> None:
        self.learn = learn

    @property
    def name(self) -> str:
        """Snake-case class name without a 'CB'/'Callback' suffix: `TrackResults` → `track_results`."""
        n = re.sub(r"(CB|Callback)$", "", type(self).__name__) or type(self).__name__
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", n).lower()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _event_methods(cb: Callback) -> list[str]:
    names = [n for n in dir(type(cb)) if re.match(r"(before|after)_", n) and callable(getattr(cb, n))]
    unknown = [n for n in names if n not in EVENTS]
    if unknown:
        raise ValueError(f"no callback event {unknown[0]!r} ({type(cb).__name__}.{unknown[0]}); "
                         f"valid events: {', '.join(EVENTS)}")
    return names


class Learner:
    """Trains `model` on `dls` with `loss_func`, an optimizer made by `opt_func`, and callbacks.

    Args:
        model: anything callable with `parameters()`: a groundup `Module` or a `torch.nn.Module`.
        dls: an object with `.train` and `.valid` iterables of batches `(xb, yb)` (e.g. `DataLoaders`).
        loss_func: `loss_func(preds, yb) -> loss` (e.g. `groundup.losses.cross_entropy`).
        lr: the learning rate given to `opt_func` when `fit` creates the optimizer.
        cbs: callbacks, kept for every `fit`.
        opt_func: `opt_func(params, lr) -> optimizer`: groundup's `SGD`/`Adam` or a `torch.optim` class.

    State the learner exposes to callbacks (the contract; reads through `self.<name>` in a callback):
        model, dls, loss_func, lr, opt_func, cbs, opt (created at the start of `fit`, after
        `before_fit`), n_epochs, epoch, training (True in the training pass), dl (the loader of
        the current pass), n_iter (its number of batches), iter (index of the batch in the pass),
        batch (the tuple from the loader, after `before_batch` may have replaced it), xb, yb
        (`batch[0]`, `batch[1]`), preds, loss, loss_grad (what `backward` is called on; a
        callback may replace it in `after_loss`, e.g. to scale it). `num` reads `iter` under the
        walkthrough's name.

    Example:
        >>> learn = Learner(simple_cnn(), dls, cross_entropy, lr=0.1, cbs=[SetupLearnerCB(), TrackResults()])
        >>> learn.fit(1)
    """

    def __init__(self, model, dls, loss_func: Callable, lr: float = 0.1,
                 cbs: Iterable[Callback] | None = None, opt_func: Callable = SGD):
        if not hasattr(model, "parameters") or not callable(model):
            raise TypeError(f"model must be callable and have parameters(), got {type(model).__name__}")
        if not (hasattr(dls, "train") and hasattr(dls, "valid")):
            raise TypeError(f"dls must have .train and .valid (e.g. DataLoaders), got {type(dls).__name__}")
        if not callable(loss_func):
            raise TypeError(f"loss_func must be callable, got {loss_func!r}")
        _check_lr(lr)
        self.model, self.dls, self.loss_func, self.lr, self.opt_func = model, dls, loss_func, lr, opt_func
        self.opt = None
        self.training, self.epoch, self.n_epochs, self.iter, self.n_iter = False, 0, 0, 0, 0
        self.batch = self.preds = self.loss = self.loss_grad = self.dl = None
        self.cbs: list[Callback] = []
        self._events: dict[str, list[Callable[[], None]]] = {e: [] for e in EVENTS}  # fit works with no cbs
        for cb in cbs or ():
            self.add_cb(cb)

    # -- callbacks --------------------------------------------------------------------------------
    def add_cb(self, cb: Callback) -> Learner:
        """Add a callback (checked: each `before_*`/`after_*` method must name a real event)."""
        if isinstance(cb, type):
            raise TypeError(f"add_cb got the class {cb.__name__}; pass an instance: {cb.__name__}()")
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        _event_methods(cb)
        cb.learn = self
        self.cbs.append(cb)
        self._build_events()
        return self

    def remove_cb(self, cb: Callback) -> Learner:
        """Remove a callback added earlier."""
        self.cbs.remove(cb)
        object.__setattr__(cb, "learn", None)
        self._build_events()
        return self

    @contextmanager
    def added_cbs(self, cbs: Iterable[Callback]):
        """Add `cbs` for the duration of a `with` block."""
        cbs = list(cbs)
        for cb in cbs:
            self.add_cb(cb)
        try:
            yield self
        finally:
            for cb in cbs:
                self.remove_cb(cb)

    def get_cb(self, cls: type) -> Callback | None:
        """The first callback that is an instance of `cls`, or None."""
        return next((cb for cb in self.cbs if isinstance(cb, cls)), None)

    def _build_events(self) -> None:
        # Per-event lists of bound methods, sorted by order once: no attribute scans per batch.
        ordered = sorted(self.cbs, key=lambda cb: getattr(cb, "order", 0))
        self._events = {e: [getattr(cb, e) for cb in ordered if hasattr(type(cb), e)] for e in EVENTS}

    def __call__(self, event: str) -> None:
        """Fire `event` on every callback that defines it, in `order`."""
        for method in self._events[event]:
            method()

    # -- the loop ---------------------------------------------------------------------------------
    @property
    def xb(self):
        return self.batch[0]

    @property
    def yb(self):
        return self.batch[1]

    @property
    def num(self) -> int:
        """The walkthrough's name for `iter`, the index of the batch in the current pass (read-only)."""
        return self.iter

    def fit(self, n_epochs: int, cbs: Sequence[Callback] | None = None, start_epoch: int = 0) -> None:
        """Train for `n_epochs`: each epoch a training pass then a validation pass.

        Args:
            n_epochs: total number of epochs.
            cbs: extra callbacks for this call only.
            start_epoch: resume at this epoch (schedules and shuffling continue as if epochs
                `0..start_epoch-1` had run here; see `Learner.load`).

        `before_fit` runs first, then the optimizer is created from `opt_func(params, lr)`, so a
        callback may change `lr` in `before_fit`. A later `fit` keeps the optimizer (and its
        momentum state) and sets every group's lr to `learn.lr`.
        """
        if not isinstance(n_epochs, int) or isinstance(n_epochs, bool) or n_epochs < 1:
            raise ValueError(f"n_epochs must be a positive int, got {n_epochs!r}")
        if not 0 <= start_epoch <= n_epochs:
            raise ValueError(f"start_epoch must be in [0, n_epochs={n_epochs}], got {start_epoch!r}")
        _check_lr(self.lr)
        self.n_epochs, self.epoch = n_epochs, start_epoch
        with self.added_cbs(cbs or ()):
            try:
                self("before_fit")
                if self.opt is None:
                    self.opt = self.opt_func(list(self.model.parameters()), self.lr)
                else:  # a later fit keeps the optimizer's state and starts from learn.lr
                    for group in self.opt.param_groups:
                        group["lr"] = self.lr
                for self.epoch in range(start_epoch, n_epochs):
                    self._with_events(self._do_epoch, "epoch", CancelEpochException)
            except CancelFitException:
                pass
            finally:
                self.training = False
                self("after_fit")

    def _with_events(self, f: Callable[[], None], name: str, cancel: type[Exception]) -> None:
        try:
            self(f"before_{name}")
            f()
        except cancel:
            pass
        self(f"after_{name}")

    def _do_epoch(self) -> None:
        self.one_epoch(True)
        self.one_epoch(False)

    def one_epoch(self, train: bool) -> None:
        """One pass over `dls.train` (with gradient steps) or `dls.valid` (under `torch.no_grad`)."""
        self.training = train
        self.model.train(train)
        self.dl = self.dls.train if train else self.dls.valid
        if hasattr(self.dl, "set_epoch"):
            self.dl.set_epoch(self.epoch)  # the shuffle order is a function of the epoch: exact resume
        self.n_iter = len(self.dl) if hasattr(self.dl, "__len__") else 0
        name, cancel = ("train", CancelTrainException) if train else ("validate", CancelValidateException)
        with torch.set_grad_enabled(train):
            self._with_events(self._all_batches, name, cancel)

    def _all_batches(self) -> None:
        for self.iter, self.batch in enumerate(self.dl):  # noqa: B020 - the walkthrough's idiom: state lives on self
            self._with_events(self.one_batch, "batch", CancelBatchException)

    def one_batch(self) -> None:
        """Predict, compute the loss and, in training, backward, step and zero the gradients."""
        self.preds = self.model(self.batch[0])
        self("after_pred")
        self.loss = self.loss_grad = self.loss_func(self.preds, *self.batch[1:])
        self("after_loss")
        if not self.training:
            return
        self.loss_grad.backward()
        try:
            self("after_backward")
            self.opt.step()
            self("after_step")
        except CancelStepException:
            pass
        self.opt.zero_grad()

    # -- conveniences built on callbacks ------------------------------------------------------------
    def lr_find(self, start_lr: float = 1e-6, mult: float = 1.2, max_lr: float = 10.0,
                path: str | Path | None = "lr_find.png", max_iter: int | None = None):
        """Run the LR finder and return its suggestion; model and optimizer are restored afterwards.

        The learning rate starts at `start_lr` and is multiplied by `mult` after every training
        batch until it exceeds `max_lr` or the loss is NaN or explodes (see `LRFinder`).

        Returns:
            an `LRSuggestion` with `.lr`, `.method`, and the recorded `.lrs`/`.losses`.

        Example:
            >>> suggestion = learn.lr_find()      # writes lr_find.png
            >>> learn.fit_one_cycle(8, suggestion.lr)
        """
        from groundup.callbacks.lr_finder import LRFinder

        finder = LRFinder(start_lr=start_lr, mult=mult, max_lr=max_lr, max_iter=max_iter)
        self.fit(max(1, finder.epochs_needed(self)), cbs=[finder])
        if path is not None:
            finder.plot(path)
        return finder.suggestion()

    def fit_one_cycle(self, n_epochs: int, lr_max: float | None = None, cbs: Sequence[Callback] | None = None,
                      **kwargs) -> None:
        """`fit` with a `OneCycle` schedule peaking at `lr_max` (default: `self.lr`); kwargs go to OneCycle."""
        from groundup.callbacks.schedules import OneCycle

        self.fit(n_epochs, cbs=[OneCycle(lr_max if lr_max is not None else self.lr, **kwargs), *(cbs or ())])

    def save(self, path: str | Path, **extra) -> Path:
        """Write a checkpoint (model, optimizer, epoch, RNG states, callbacks' state, `extra`) atomically."""
        from groundup.checkpoint import save_checkpoint

        return save_checkpoint(self, path, **extra)

    def load(self, path: str | Path, with_opt: bool = True) -> dict:
        """Restore a checkpoint written by `save`; returns its contents (e.g. `['epoch']` to resume from)."""
        from groundup.checkpoint import load_checkpoint

        return load_checkpoint(self, path, with_opt=with_opt)

    def __repr__(self) -> str:
        return (f"Learner(model={type(self.model).__name__}, lr={self.lr}, "
                f"cbs=[{', '.join(type(cb).__name__ for cb in self.cbs)}])")


def _check_lr(lr: float) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or lr == float("inf"):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
