"""The `Learner`: the training loop and its extension points (walkthrough steps 9-12).

The loop, with the event fired at each step:

    fit(n_epochs):                      before_fit
      for epoch:                        before_epoch
        train pass:                     before_train
          for batch in dls.train:       before_batch
            preds = model(xb)           after_pred
            loss = loss_func(preds, yb) after_loss
            learn.backward()            after_backward     (loss.backward(), through a grad scaler if set;
                                                        while keep_grads is set the batch ends here)
            learn.step()                after_step         (opt.step(), likewise)
            opt.zero_grad()             after_batch
                                        after_train
        validation pass (no grad):      before_validate ... (batches: pred, loss) ... after_validate
                                        after_epoch
                                        after_fit   (always: after a cancel, an error or Ctrl-C too)

`Callback`, the event names and the Cancel exceptions live in `groundup.callbacks.core` (and are
importable from here too).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

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
    event_methods,
)
from groundup.callbacks.lr_finder import LRFinder, LRSuggestion
from groundup.callbacks.progress import ProgressBar
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.tracking import check_metrics
from groundup.data.files import IMAGE_EXTENSIONS, get_image_files
from groundup.data.preprocessing import Preprocessing
from groundup.data.show import display_images, image_grid
from groundup.inference import (
    evaluating,
    inference_batches,
    is_image,
    item_losses,
    model_device,
    probabilities,
    tta_forward,
)
from groundup.metrics import task_metric
from groundup.nn.layers import BatchNorm
from groundup.nn.models import layer_groups
from groundup.optim import SGD, group_lrs, set_group_lrs, split_by_layer_groups, state_to_param_devices
from groundup.utils.checkpoint_file import load_body, load_checkpoint, read_checkpoint, save_checkpoint
from groundup.utils.checks import check_int, check_number
from groundup.utils.plots import finish_figure

__all__ = [
    "EVENTS",
    "Callback",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CancelStepException",
    "CancelTrainException",
    "CancelValidateException",
    "ImagePrediction",
    "Learner",
    "TagsPrediction",
]


class ImagePrediction(NamedTuple):
    """What `Learner.predict` returns for one image: `label, index, probs = learn.predict(img)`."""

    label: str  # the class name (`preprocessing.class_names[index]`; the folder name when there are none)
    index: int  # the class's index in the vocabulary (`preprocessing.vocab[index]`)
    probs: torch.Tensor  # (n_classes,) the probability of every class


class TagsPrediction(NamedTuple):
    """What `Learner.predict` returns for one image of a multi-label model: `tags, mask, probs = learn.predict(img)`."""

    tags: list[str]  # the names of the tags above the threshold, most probable first
    mask: torch.Tensor  # (n_tags,) bool: which tags are predicted (`probs > preprocessing.threshold`)
    probs: torch.Tensor  # (n_tags,) the probability of every tag (a sigmoid each)


def as_callbacks(cbs: Callback | Iterable[Callback] | None) -> list[Callback]:
    """`cbs` as a list: None is none, one callback is a list of one (as fastai takes them), else the list."""
    if cbs is None:
        return []
    if isinstance(cbs, (Callback, type)) or not isinstance(cbs, Iterable):
        return [cbs]  # add_cb says what is wrong with anything that is not a Callback instance
    return list(cbs)


class Learner:
    """Trains `model` on `dls` with `loss_func`, an optimizer made by `opt_func`, and callbacks.

    Args:
        model: anything callable with `parameters()`: a groundup `Module` or a `torch.nn.Module`.
        dls: an object with `.train` and `.valid` iterables of batches `(xb, yb)` (e.g. `DataLoaders`).
        loss_func: `loss_func(preds, yb) -> loss` (e.g. `groundup.losses.cross_entropy`).
        lr: the learning rate given to `opt_func` when `fit` creates the optimizer.
        cbs: callbacks, kept for every `fit`.
        opt_func: `opt_func(params, lr) -> optimizer`: groundup's `SGD`/`Adam` or a `torch.optim` class.
        preprocessing: how images become model inputs (size, vocabulary, class names, statistics);
            default `dls.preprocessing` when the loaders have one. Stored in every checkpoint.
        splitter: `splitter(model) -> [[params], ..., [head params]]`, the layer groups that `freeze`,
            `freeze_to` and discriminative learning rates (`fit(n, slice(1e-5, 1e-3))`) work on;
            default: the registered architecture's (`groundup.nn.models.layer_groups`), else one group.
        train_bn: while frozen, normalization layers (BatchNorm, LayerNorm, GroupNorm) keep training
            (fastai's `train_bn`): their scales and shifts adapt the frozen features to the new data.
        metrics: functions `f(preds, targets) -> 0-d tensor` (e.g. `[accuracy, error_rate]` from
            `groundup.metrics`, `accuracy_multi` for several labels per image): `TrackResults` records
            each on the validation pass, averaged weighted by batch size, as a column named after the
            function (`f.__name__`) in the printed table, `history`, `metrics.csv` and the report.
            Default None: `train_acc` and `valid_acc` (accuracy, or `accuracy_multi` for a multi-label learner).
        progress: show a progress bar during `fit` (a `ProgressBar()` joins each fit unless `cbs` has one): a
            text bar on a terminal, a widget bar in a Jupyter notebook, a plain line per epoch elsewhere
            (a pipe, a log). `progress=False` (or `learn.progress = False`) turns it off.

    State the learner exposes to callbacks (the contract; reads through `self.<name>` in a callback):
        model, dls, loss_func, lr, opt_func, cbs, preprocessing, metrics, opt (created at the start of `fit`,
        after `before_fit`), n_epochs, epoch, training (True in the training pass), dl (the loader
        of the current pass), n_iter (its number of batches), iter (index of the batch in the pass;
        `num` is the walkthrough's name for it), batch (the tuple from the loader, after
        `before_batch` may have replaced it), xb, yb (`batch[0]`, `batch[1]`), preds,
        loss, loss_grad (what `backward` is called on; a callback may replace it in `after_loss`,
        e.g. to scale it), history (one dict of results per epoch, filled by `TrackResults`),
        data_seconds (the seconds this epoch's passes have spent so far waiting for the loader's
        next batch: host time around `next()`, no device sync).

    Extension points, for callbacks that change how the loop runs (set them in `before_fit`; `fit`
    puts each back when it ends):
        autocast: a function returning the context the forward pass and the loss run in
            (default: no context); mixed precision sets `torch.autocast`.
        grad_scaler: None, or a `torch.amp.GradScaler`: then `backward()` scales the loss and
            unscales the gradients (callbacks in `after_backward` see true gradients) and `step()`
            steps through the scaler.
        wrap_model(fn): train `fn(model)` (e.g. DistributedDataParallel, a compiled model) in place
            of the model until the end of this fit; `unwrapped_model` is the user's model throughout.
        hold_cancel_fit: while True, a `CancelFitException` raised by a callback does not stop the
            loop; it sets `cancel_fit_requested`, for a callback to act on at an agreed point
            (distributed training: every rank stops at the same batch).
        keep_grads: while True, a training batch ends after `backward()`: no `after_backward`, no
            step, no `zero_grad` (`after_batch` still runs), so the next batch's gradients add to
            these (`GradientAccumulation` sets it in `before_batch` on all batches but every K-th).
            A Cancel exception can't say this: skipping `zero_grad` is not enough with a
            `grad_scaler`, whose gradients must stay scaled until the batch that steps unscales
            them all at once.
        `learn.dls` may be replaced in `before_fit` (e.g. by sharded loaders).

    Example:
        >>> learn = Learner(simple_cnn(), dls, cross_entropy, lr=0.1, cbs=[SetupLearnerCB(), TrackResults()])
        >>> learn.fit(1)
    """

    def __init__(self, model, dls, loss_func: Callable, lr: float = 0.1,
                 cbs: Callback | Iterable[Callback] | None = None, opt_func: Callable = SGD,
                 preprocessing: Preprocessing | None = None, splitter: Callable | None = None,
                 train_bn: bool = True, metrics: Callable | Iterable[Callable] | None = None,
                 progress: bool = True):
        if not hasattr(model, "parameters") or not callable(model):
            raise TypeError(f"model must be callable and have parameters(), got {type(model).__name__}")
        if not (hasattr(dls, "train") and hasattr(dls, "valid")):
            raise TypeError(f"dls must have .train and .valid (e.g. DataLoaders), got {type(dls).__name__}")
        if not callable(loss_func):
            raise TypeError(f"loss_func must be callable, got {loss_func!r}")
        _check_lr(lr)
        self.metrics = check_metrics(metrics)
        if not isinstance(progress, bool):
            raise TypeError(f"Learner: progress must be True or False (show a progress bar during fit), got {progress!r}")
        self.progress = progress
        self.model, self.dls, self.loss_func, self.lr, self.opt_func = model, dls, loss_func, lr, opt_func
        if preprocessing is None:
            preprocessing = getattr(dls, "preprocessing", None)
            if preprocessing is None and getattr(dls, "stats", None) is not None:  # the walkthrough's loose pieces
                preprocessing = Preprocessing(*dls.stats, vocab=getattr(dls, "vocab", None))
        self.preprocessing = preprocessing
        self.splitter, self.train_bn = splitter or layer_groups, train_bn
        self.frozen_groups = 0  # how many leading layer groups `freeze_to` froze
        self.transfer = None  # what `load(..., with_head=False)` kept, dropped and made
        self.opt = None
        self.training, self.epoch, self.n_epochs, self.iter, self.n_iter = False, 0, 0, 0, 0
        self.data_seconds = 0.0
        self.batch = self.preds = self.loss = self.loss_grad = self.dl = None
        self.history: list[dict[str, Any]] = []
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.grad_scaler = None
        self.hold_cancel_fit, self.cancel_fit_requested = False, False
        self.keep_grads = False
        self._unwrapped = None  # the user's model while a wrapper from wrap_model trains in its place
        self._unscaled = False  # grad_scaler.unscale_ ran since its last update()
        self.cbs: list[Callback] = []
        self._events: dict[str, list[Callable[[], None]]] = {e: [] for e in EVENTS}  # fit works with no cbs
        for cb in as_callbacks(cbs):
            self.add_cb(cb)

    # -- callbacks --------------------------------------------------------------------------------
    def add_cb(self, cb: Callback) -> Learner:
        """Add a callback (checked: each `before_*`/`after_*` method must name a real event)."""
        if isinstance(cb, type):
            raise TypeError(f"add_cb got the class {cb.__name__}; pass an instance: {cb.__name__}()")
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        event_methods(cb)
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

    @contextlib.contextmanager
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
            try:
                method()
            except CancelFitException:
                if not self.hold_cancel_fit:
                    raise
                self.cancel_fit_requested = True  # see `hold_cancel_fit`

    # -- extension points ---------------------------------------------------------------------------
    def wrap_model(self, wrap: Callable[[Any], Any]) -> None:
        """Train `wrap(model)` in place of the model until this `fit` ends (then the model comes back).

        For callbacks that need a wrapper around the user's model during training: data-parallel
        training (`DistributedDataParallel`), a compiled model. Call it in `before_fit` or later.
        """
        if self._unwrapped is None:
            self._unwrapped = self.model
        self.model = wrap(self.model)

    @property
    def unwrapped_model(self):
        """The user's model, also while a wrapper from `wrap_model` trains in its place."""
        return self.model if self._unwrapped is None else self._unwrapped

    def _unwrap(self) -> None:
        if self._unwrapped is not None:
            self.model, self._unwrapped = self._unwrapped, None

    def backward(self) -> None:
        """Backpropagate `loss_grad` (through `grad_scaler` when one is set)."""
        scaler = self.grad_scaler
        if scaler is None:
            self.loss_grad.backward()
            return
        if self._unscaled:  # the last batch's step was skipped: close its bookkeeping first
            scaler.update()
        scaler.scale(self.loss_grad).backward()
        if self.keep_grads:  # accumulating: the gradients stay scaled until the batch that steps
            return
        scaler.unscale_(self.opt)  # from here on the gradients are the true ones
        self._unscaled = True

    def step(self) -> None:
        """One optimizer step (through `grad_scaler`, which skips steps with inf/NaN gradients)."""
        scaler = self.grad_scaler
        if scaler is None:
            self.opt.step()
            return
        scaler.step(self.opt)
        scaler.update()
        self._unscaled = False

    # -- layer groups: freezing ---------------------------------------------------------------------
    def layer_groups(self) -> list[list[torch.Tensor]]:
        """The model's parameters in layer groups, body first and head last (from `splitter`)."""
        return self.splitter(self.unwrapped_model)

    def freeze_to(self, n: int) -> Learner:
        """Freeze the first `n` layer groups (negative: all but the last `-n`); train the rest.

        Frozen parameters get `requires_grad=False`, so they have no gradients and the optimizer
        leaves them bit-identical (no step, no weight decay). With `train_bn` the normalization
        layers' parameters keep training. As fastai's `freeze_to`. Returns the learner.
        """
        groups = self.layer_groups()
        k = n if n >= 0 else len(groups) + n
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= k < len(groups):
            raise ValueError(f"freeze_to({n!r}): the model has {len(groups)} layer groups and the last (the head) "
                             f"must stay trainable: n must be in [{-(len(groups) - 1)}, {len(groups) - 1}]")
        norms = _norm_params(self.unwrapped_model) if self.train_bn else set()
        for i, group in enumerate(groups):
            for p in group:
                p.requires_grad_(i >= k or id(p) in norms)
        self.frozen_groups = k
        return self

    def freeze(self) -> Learner:
        """Train the head only (and, with `train_bn`, the normalization layers): `freeze_to(-1)`."""
        return self.freeze_to(-1)

    def unfreeze(self) -> Learner:
        """Train every layer group again: `freeze_to(0)`."""
        return self.freeze_to(0)

    # -- the loop ---------------------------------------------------------------------------------
    @property
    def xb(self):
        return self.batch[0]

    @property
    def yb(self):
        return self.batch[1]

    @property
    def num(self) -> int:
        """The index of the current batch in its pass (the walkthrough's name for `iter`)."""
        return self.iter

    def fit(self, n_epochs: int, lr: float | slice | None = None, cbs: Callback | Sequence[Callback] | None = None,
            start_epoch: int = 0) -> None:
        """Train for `n_epochs`: each epoch a training pass then a validation pass.

        Args:
            n_epochs: total number of epochs.
            lr: the learning rate for this fit (default `learn.lr`); `slice(start, stop)` gives each layer
                group its own, geometric from `start` (the body's first group) to `stop` (the head), and
                `slice(stop)` gives the body `stop / 10` (`groundup.optim.group_lrs`).
            cbs: extra callbacks for this call only: one, or a list.
            start_epoch: resume at this epoch (schedules and shuffling continue as if epochs
                `0..start_epoch-1` had run here; see `Learner.load`).

        `before_fit` runs first, then the optimizer is created from `opt_func(params, lr)`, so a
        callback may change `lr` in `before_fit`. A later `fit` (or one after `load`) keeps the
        optimizer (and its momentum state, moved to wherever `before_fit` put the model:
        `groundup.optim.state_to_param_devices`) and sets every group's lr to `learn.lr`.
        """
        check_int("Learner.fit", "n_epochs", n_epochs)
        if not 0 <= start_epoch <= n_epochs:
            raise ValueError(f"start_epoch must be in [0, n_epochs={n_epochs}], got {start_epoch!r}")
        if isinstance(cbs, (int, float, slice)):
            raise TypeError(f"fit's second argument is lr, its third cbs; got cbs={cbs!r}: pass callbacks as cbs=[...]")
        _check_lr(self.lr)
        if lr is not None:
            group_lrs(lr, 1)  # checks a number or a slice before any work
        self.n_epochs, self.epoch = n_epochs, start_epoch
        extra = as_callbacks(cbs)
        if self.progress and not any(isinstance(cb, ProgressBar) for cb in (*self.cbs, *extra)):
            extra.append(ProgressBar())  # for this fit only: `learn.cbs` stays the user's list
        with self.added_cbs(extra):
            try:
                self("before_fit")
                fit_lr = self.lr if lr is None else lr  # after before_fit: a callback may set learn.lr
                top = fit_lr.stop if isinstance(fit_lr, slice) else fit_lr
                if self.opt is None:
                    self.opt = self.opt_func(list(self.unwrapped_model.parameters()), top)
                else:  # a later fit keeps the optimizer's state and starts from learn.lr
                    state_to_param_devices(self.opt)  # the model may have moved (SetupLearnerCB): the state follows
                    if not isinstance(fit_lr, slice):
                        for group in self.opt.param_groups:
                            group["lr"] = fit_lr
                if isinstance(fit_lr, slice):  # discriminative lrs: one optimizer group per layer group (at least)
                    groups = self.layer_groups()
                    split_by_layer_groups(self.opt, groups)
                    set_group_lrs(self.opt, group_lrs(fit_lr, len(groups)))
                for self.epoch in range(start_epoch, n_epochs):
                    self._with_events(self._do_epoch, "epoch", CancelEpochException)
            except CancelFitException:
                pass
            finally:
                self.training = False
                self.hold_cancel_fit = False
                try:
                    self("after_fit")
                finally:  # the extension points go back to their defaults for the next fit
                    self.batch = self.preds = self.loss = self.loss_grad = None  # free the last batch's memory
                    self._unwrap()
                    self.autocast, self.grad_scaler, self._unscaled = contextlib.nullcontext, None, False
                    self.cancel_fit_requested = self.keep_grads = False

    def _with_events(self, f: Callable[[], None], name: str, cancel: type[Exception]) -> None:
        try:
            self(f"before_{name}")
            f()
        except cancel:
            pass
        self(f"after_{name}")

    def _do_epoch(self) -> None:
        self.data_seconds = 0.0
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
        for self.iter, self.batch in enumerate(self._waited(self.dl)):  # noqa: B020 - the walkthrough's idiom
            self._with_events(self.one_batch, "batch", CancelBatchException)

    def _waited(self, dl: Iterable) -> Iterable:
        """`dl`'s batches, adding the time spent waiting for each to `data_seconds`.

        Two clock reads per batch and no device sync: the time the loop stood still in `next()`
        (decoding in this process, or waiting for the workers), which is what a slow loader costs.
        """
        batches = iter(dl)
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.data_seconds += time.perf_counter() - start
            yield batch

    def one_batch(self) -> None:
        """Predict, compute the loss and, in training, backward, step and zero the gradients."""
        with self.autocast():
            self.preds = self.model(self.batch[0])
            self("after_pred")
            self.loss = self.loss_grad = self.loss_func(self.preds, *self.batch[1:])
            self("after_loss")
        if not self.training:
            return
        self.backward()
        if self.keep_grads:  # accumulating gradients: the next batch's backward adds to these
            return
        try:
            self("after_backward")
            self.step()
            self("after_step")
        except CancelStepException:
            pass
        self.opt.zero_grad()

    # -- conveniences built on callbacks ------------------------------------------------------------
    def lr_find(self, start_lr: float | slice = 1e-6, mult: float = 1.2, max_lr: float = 10.0,
                path: str | Path | None = None, max_iter: int | None = None, method: str | None = None,
                cap: float | None = None) -> LRSuggestion:
        """Run the LR finder and return its suggestion; model, optimizer and history are restored afterwards.

        The learning rate starts at `start_lr` and is multiplied by `mult` after every training
        batch until it exceeds `max_lr` or the loss is NaN or explodes (see `LRFinder`). Callbacks
        with `during_lr_find = False` (`TrackResults`, `Recorder`, `Checkpoint`) are set aside
        meanwhile: the finder's batches print no results table and save no checkpoint. With
        `start_lr=slice(start, stop)` every layer group starts at its own rate (`group_lrs`) and all
        grow together; the curve and the suggestion are the head's rate (the slice's stop).

        Args:
            path: also write the plot of loss against lr to this PNG file (default: no file).
            method, cap: the suggestion's rule and upper bound (`suggest_lr`; default: `slide`, no bound).
                With AdamW, `method="rise", cap=0.01` is the rule measured to do as well as 0.01
                (README, "--lr auto"; what `groundup train --lr auto` uses).

        Returns:
            an `LRSuggestion` with `.lr`, `.method`, the recorded `.lrs`/`.losses`, and `.plot()`: the
            curve with the suggestion marked, as a matplotlib `Figure`. A notebook shows that plot
            when `learn.lr_find()` ends a cell.

        Example:
            >>> suggestion = learn.lr_find()      # lr_find(path="lr_find.png") also writes the plot
            >>> learn.fit_one_cycle(8, suggestion.lr)
        """
        top = group_lrs(start_lr, 1)[0] if isinstance(start_lr, slice) else start_lr
        finder = LRFinder(start_lr=top, mult=mult, max_lr=max_lr, max_iter=max_iter)
        history, cbs = self.history, list(self.cbs)
        for cb in [cb for cb in cbs if not cb.during_lr_find]:
            self.remove_cb(cb)
        try:
            self.fit(max(1, finder.epochs_needed(self)), lr=start_lr if isinstance(start_lr, slice) else None,
                     cbs=[finder])
        finally:
            self.history = history  # the finder's batches are not part of the results
            for cb in cbs:
                cb.learn = self
            self.cbs = cbs  # as they were, in their order
            self._build_events()
        if path is not None:
            finder.plot(path, method, cap)
        return finder.suggestion(method, cap)

    def fit_one_cycle(self, n_epochs: int, max_lr: float | slice | None = None,
                      cbs: Callback | Sequence[Callback] | None = None, **kwargs) -> None:
        """`fit` with a `OneCycle` schedule peaking at `max_lr` (default: `self.lr`); kwargs go to OneCycle.

        `max_lr=slice(1e-5, 1e-3)` gives every layer group its own cycle (discriminative learning
        rates: the body's first group peaks at 1e-5, the head at 1e-3, geometric in between).
        """
        max_lr = max_lr if max_lr is not None else self.lr
        self.fit(n_epochs, lr=max_lr if isinstance(max_lr, slice) else None,
                 cbs=[OneCycle(max_lr, **kwargs), *as_callbacks(cbs)])

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, **kwargs) -> None:
        """Adapt a trained model to new data, as fastai's `fine_tune`: the head first, then everything.

        1. `freeze()`, then `fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99)`: the new
           head (and, with `train_bn`, the norm layers) learns while the body stays as trained;
        2. `unfreeze()`, halve `base_lr`, then `fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr),
           pct_start=pct_start, div=div)`: the body's first group learns `lr_mult` times slower than the head.
        kwargs go to both `fit_one_cycle` calls (e.g. `cbs`).

        Example:
            >>> learn.load("runs/a/model.pt", with_head=False)   # a trained body, a new head
            >>> learn.fine_tune(3)
        """
        check_int("Learner.fine_tune", "epochs", epochs)
        check_int("Learner.fine_tune", "freeze_epochs", freeze_epochs, low=0)
        check_number("Learner.fine_tune", "base_lr", base_lr, low_inclusive=False)
        check_number("Learner.fine_tune", "lr_mult", lr_mult, low=1.0)
        if freeze_epochs:
            self.freeze()
            self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, **kwargs)
        base_lr /= 2
        self.unfreeze()
        self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, **kwargs)

    # -- looking at the model: predictions without training ---------------------------------------------
    def get_preds(self, dl=None, with_loss: bool = False, bs: int = 64, tta: bool = False) -> tuple:
        """The model's class probabilities on a loader or a list of images, with the targets (and each loss).

        The model runs batch by batch in eval mode under `torch.no_grad`; its mode (train or eval)
        is put back afterwards. No callback runs: image batches get the preprocessing of training
        (`learn.preprocessing`: normalize, NHWC → NCHW) on the model's device, as `SetupLearnerCB`
        gives them during `fit`.

        Args:
            dl: a loader of `(xb, yb)` batches (default `dls.valid`), or a list of images (file paths,
                PIL images or uint8 arrays (H, W, 3)), squashed to `preprocessing.size` as in training.
            with_loss: also return the loss of each item.
            bs: the batch size for a list of images.
            tta: test-time augmentation with flips: each probability is the mean of the model's on
                the image and on its mirror image (see `tta_forward`); twice the work.

        Returns:
            `(probs, targets)`, or `(probs, targets, losses)` with `with_loss`: probs (N, n_classes), the
            softmax of the outputs (multi-label: a sigmoid per tag); targets (N,) (multi-label: (N, n_tags)
            multi-hot), None for a list of images; losses (N,). All on the CPU.

        Example:
            >>> probs, targets = learn.get_preds()
            >>> (probs.argmax(1) == targets).float().mean()     # the validation accuracy
        """
        images = isinstance(dl, (list, tuple)) and bool(dl) and is_image(dl[0])
        if with_loss and images:
            raise ValueError("get_preds(with_loss=True) needs targets, and a list of images has none; pass a "
                             "loader of (xb, yb) batches")
        probs, targets, losses = [], [], []
        with evaluating(self.unwrapped_model) as model:
            batches = inference_batches(self.dls.valid if dl is None else dl, self.preprocessing,
                                        model_device(model), bs)
            for xb, yb in batches:
                preds = tta_forward(model, xb, self._multi_label) if tta else model(xb)  # (n, n_classes)
                probs.append(probabilities(preds, self.preprocessing).cpu())
                if yb is not None:
                    targets.append(yb.cpu())
                    if with_loss:
                        losses.append(item_losses(self.loss_func, preds, yb).cpu())
                elif with_loss:
                    raise ValueError("get_preds(with_loss=True): the loader's batches have no targets")
        if not probs:
            raise ValueError("get_preds: the loader yielded no batches (is it empty?)")
        out = (torch.cat(probs), torch.cat(targets) if targets else None)
        return (*out, torch.cat(losses)) if with_loss else out

    def validate(self, dl=None, tta: bool = False) -> dict[str, float]:
        """The mean loss and the accuracy of the model on `dl` (default `dls.valid`), without training.

        Runs as `get_preds` does (eval mode, no gradients, no callbacks); items are weighted equally.
        With `tta`, each image is also seen mirrored and the two predictions are averaged (`tta_forward`).

        Returns:
            `{"loss": ..., "acc": ...}` (`acc` only when the model's outputs are class scores (N, C); for
            a multi-label model, `accuracy_multi` at the preprocessing's threshold).

        Example:
            >>> learn.validate()
            {'loss': 1.2345, 'acc': 0.61}
        """
        loss_sum = correct = None
        n = 0
        pre = self.preprocessing
        metric = task_metric(self._multi_label, pre.threshold if pre is not None else 0.5)
        with evaluating(self.unwrapped_model) as model:
            batches = inference_batches(self.dls.valid if dl is None else dl, self.preprocessing,
                                        model_device(model))
            for xb, yb in batches:
                if yb is None:
                    raise ValueError("validate needs (xb, yb) batches with targets; to predict images, use "
                                     "get_preds or predict")
                preds, k = tta_forward(model, xb, self._multi_label) if tta else model(xb), len(yb)
                loss = self.loss_func(preds, yb).detach().float() * k  # sums stay on the device: one sync
                loss_sum = loss if loss_sum is None else loss_sum + loss
                if preds.ndim == 2:
                    acc = metric(preds, yb).float() * k
                    correct = acc if correct is None else correct + acc
                n += k
        if not n:
            raise ValueError("validate: the loader yielded no batches (is it empty?)")
        result = {"loss": float(loss_sum) / n}
        if correct is not None:
            result["acc"] = float(correct) / n
        return result

    def predict(self, image, tta: bool = False) -> ImagePrediction | TagsPrediction | list:
        """The most probable class of one image (a file path, a PIL image or a uint8 array (H, W, 3)), or
        of each image of a list or a folder.

        For a multi-label model (`preprocessing.multi_label`): every tag whose probability is above
        `preprocessing.threshold`, as `TagsPrediction(tags, mask, probs)`.

        The images go through the preprocessing of training: squashed to `preprocessing.size`,
        normalized with its statistics; a list or a folder runs in batches (as `get_preds`). With `tta`,
        each prediction averages the image and its mirror image.

        Args:
            image: one image; a list (or tuple) of images; or a folder: its image files
                (`groundup.data.files.get_image_files`: every image under it, sorted by path).

        Returns:
            For one image `ImagePrediction(label, index, probs)`: the class name, its index in the
            vocabulary and the probability of every class (n_classes,). For a list or a folder, a list
            of those, in order.

        Example:
            >>> label, index, probs = learn.predict("tench.jpg")
            >>> label, probs[index]
            ('tench', tensor(0.9412))
            >>> [p.label for p in learn.predict("photos/")]      # every image in the folder
            ['tench', 'golf ball', ...]
        """
        if isinstance(image, (str, os.PathLike)) and Path(image).is_dir():
            files = get_image_files(image)
            if not files:
                raise ValueError(f"predict: the folder {image} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}, "
                                 f"in it or in its sub-folders)")
            return self.predict(files, tta=tta)
        if isinstance(image, (list, tuple)):
            for k, item in enumerate(image):
                if not is_image(item):
                    raise TypeError(f"predict takes an image (a path, a PIL image or a uint8 array (H, W, 3)), a "
                                    f"list of them or a folder; item {k} of the list is a {type(item).__name__}")
            if not image:
                return []
            return [self._prediction(p) for p in self.get_preds(list(image), tta=tta)[0]]
        if not is_image(image):
            raise TypeError(f"predict takes an image (a path, a PIL image or a uint8 array (H, W, 3)), a list of "
                            f"them or a folder; got {type(image).__name__}")
        return self._prediction(self.get_preds([image], tta=tta)[0][0])

    def _prediction(self, probs: torch.Tensor) -> ImagePrediction | TagsPrediction:
        """What `predict` returns for one image's probabilities (n_classes,)."""
        names = self.preprocessing.class_names if self.preprocessing is not None else None
        if self._multi_label:
            mask = self.preprocessing.tags(probs)  # (n_tags,) bool
            order = [int(i) for i in probs.argsort(descending=True) if mask[i]]
            return TagsPrediction([names[i] if names else str(i) for i in order], mask, probs)
        index = int(probs.argmax())
        return ImagePrediction(names[index] if names else str(index), index, probs)

    def show_results(self, n: int = 9, path: str | os.PathLike | None = None, ncols: int | None = None, dl=None):
        """A grid of the first `n` validation images, each titled with its target and the prediction.

        The images are shown as the loader gives them (groundup's loaders give uint8 pixels; a float
        (N, C, H, W) batch is un-normalized with `preprocessing`'s statistics). A title reads
        `true: tench` / `pred: tench (0.93)` (the predicted class and its probability; for a multi-label
        model the tags), in red where the prediction is wrong. The model runs as in `get_preds`.

        Args:
            n: how many images (the first `n` of the loader, in its order).
            path: also write the figure to this PNG file (default: no file; a notebook shows it inline).
            ncols: grid columns (default: about square).
            dl: a loader of `(xb, yb)` image batches (default `dls.valid`).

        Returns:
            the matplotlib `Figure`.

        Example:
            >>> learn.show_results()                       # inline in a notebook
            >>> learn.show_results(4, path="results.png")  # and a file
        """
        check_int("Learner.show_results", "n", n)
        xs, ys = [], []
        for batch in self.dls.valid if dl is None else dl:
            xs.append(batch[0])
            ys.append(batch[1])
            if sum(len(x) for x in xs) >= n:
                break
        if not xs:
            raise ValueError("show_results: the loader yielded no batches (is the validation set empty?)")
        if xs[0].ndim != 4:
            raise ValueError(f"show_results draws images, but the loader's batches have shape {tuple(xs[0].shape)}; "
                             f"it needs image batches (N, H, W, C) or (N, C, H, W)")
        xb, yb = torch.cat(xs)[:n], torch.cat(ys)[:n]
        probs = self.get_preds([(xb, yb)])[0]  # (n, n_classes)
        pre = self.preprocessing
        names = pre.class_names if pre is not None and pre.class_names else [str(i) for i in range(probs.shape[1])]
        captions, colors = [], []
        for p, y in zip(probs, yb.cpu()):
            if self._multi_label:
                mask, truth = pre.tags(p), y > 0.5  # (n_tags,) bool each
                true, pred = (" ".join(names[i] for i in m.nonzero().flatten().tolist()) or "(none)"
                              for m in (truth, mask))
                captions.append(f"true: {true}\npred: {pred}")
                right = bool((mask == truth).all())
            else:
                k, t = int(p.argmax()), int(y)
                captions.append(f"true: {names[t]}\npred: {names[k]} ({float(p[k]):.2f})")
                right = k == t
            colors.append("black" if right else "firebrick")
        title = f"{len(xb)} validation images: target, prediction (red: wrong)" if dl is None else None
        return finish_figure(image_grid(display_images(xb, pre), captions, colors, title, ncols), path)

    @property
    def _multi_label(self) -> bool:
        """True for a multi-label model (its `preprocessing` says so)."""
        return self.preprocessing is not None and self.preprocessing.multi_label

    def compile(self, **kwargs) -> Learner:
        """Train a `torch.compile`d model from the next `fit` on (kwargs go to `torch.compile`).

        The compiled model is made once and shares the model's tensors; `learn.model` is the
        wrapper only during a fit (see `CompileModel`). Returns the learner.

        Example:
            >>> learn.compile().fit_one_cycle(8, 0.01)
        """
        existing = next((cb for cb in self.cbs if isinstance(cb, CompileModel)), None)
        if existing is not None:
            self.remove_cb(existing)
        return self.add_cb(CompileModel(**kwargs))

    def save(self, path: str | Path, **extra) -> Path:
        """Write a checkpoint (model, optimizer, epoch, RNG states, history, preprocessing, callbacks' state,
        `extra`) atomically; see `groundup.utils.checkpoint_file`."""
        return save_checkpoint(self, path, **extra)

    def load(self, path: str | Path, with_opt: bool = True, checkpoint: dict | None = None,
             with_head: bool = True) -> dict:
        """Restore a checkpoint written by `save`; returns its contents (e.g. `['epoch']` to resume from).

        `checkpoint` is the file's contents when the caller has read it already (`read_checkpoint`),
        so that it is not read twice; `path` then only names it in messages.

        With `with_head=False` only the body's weights are taken (everything but the last layer
        group, the head): a starting point for new classes, as fastai's `load(with_head=False)`. The
        model keeps its own, freshly made head, whose output layer starts at zero (`load_body`);
        nothing else (optimizer, history, RNG) is restored.
        `learn.transfer` then says which tensors were kept, dropped and made (`WeightTransfer`), and
        a body that does not fit is a `CheckpointError` naming the first tensor that differs.
        """
        if with_head:
            return load_checkpoint(self, path, with_opt=with_opt, checkpoint=checkpoint)
        ckpt = read_checkpoint(path) if checkpoint is None else checkpoint
        self.transfer = load_body(self.unwrapped_model, ckpt["model"], self.layer_groups()[-1], source=path)
        return ckpt

    def __repr__(self) -> str:
        return (f"Learner(model={type(self.unwrapped_model).__name__}, lr={self.lr}, "
                f"cbs=[{', '.join(type(cb).__name__ for cb in self.cbs)}])")


_NORMS = (BatchNorm, torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)


def _norm_params(model) -> set[int]:
    """The ids of the normalization layers' parameters (what `train_bn` keeps training while frozen)."""
    return {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters()}


def _check_lr(lr: float) -> None:
    check_number("Learner", "lr", lr, low_inclusive=False)

