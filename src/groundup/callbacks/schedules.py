"""Hyper-parameter schedules and the `OneCycle` callback (walkthrough step 13).

A schedule is a plain function of training progress `pct` in [0, 1] (0 = the first batch,
1 = the end of training) that returns a value, such as a learning rate:

    >>> sched = sched_lin(1.0, 0.0)
    >>> sched(0.25)
    0.75

`combine_scheds` glues schedules end to end; `one_cycle_sched` builds the 1cycle policy from
them (Smith 2018, "A disciplined approach to neural network hyper-parameters"): warm the lr up
from `max_lr / div` to `max_lr`, then anneal it down, while momentum does the opposite.

Because a schedule only depends on progress, and progress only on (epoch, iter, n_epochs,
n_iter), `OneCycle` needs no saved state: `learn.fit(n, start_epoch=k)` picks up exactly where
an interrupted run left off.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

from groundup.callbacks.core import Callback
from groundup.optim import group_lrs, set_group_lrs, split_by_layer_groups
from groundup.utils.checks import check_int, check_number

__all__ = [
    "OneCycle",
    "combine_scheds",
    "one_cycle_lrs",
    "one_cycle_sched",
    "plot_schedule",
    "sched_cos",
    "sched_lin",
]

Schedule = Callable[[float], float]

ANNEALS = ("linear", "cos")
COS_DIV_FINAL = 1e4  # where a cosine one-cycle ends when div_final is None: max_lr / 1e4


def sched_lin(start: float, end: float) -> Schedule:
    """A schedule going in a straight line from `start` (pct 0) to `end` (pct 1)."""
    def lin(pct: float) -> float:
        return start + pct * (end - start)
    return lin


def sched_cos(start: float, end: float) -> Schedule:
    """A schedule going from `start` to `end` along half a cosine: flat at both ends, steepest midway.

    value(pct) = start + (1 - cos(pi * pct)) / 2 * (end - start)
    """
    def cos(pct: float) -> float:
        return start + (1 - math.cos(math.pi * pct)) / 2 * (end - start)
    return cos


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Schedule]) -> Schedule:
    """Run `scheds[i]` for the fraction `pcts[i]` of training, one after the other.

    Each schedule sees its own progress from 0 to 1 over its stretch. `pcts` must be
    non-negative and sum to 1; a stretch of length 0 is skipped.

    Example:
        >>> warm_then_decay = combine_scheds([0.25, 0.75], [sched_lin(0.1, 1.0), sched_lin(1.0, 0.0)])
        >>> warm_then_decay(0.25), warm_then_decay(0.625)
        (1.0, 0.5)
    """
    pcts, scheds = list(pcts), list(scheds)
    if len(pcts) != len(scheds) or not pcts:
        raise ValueError(f"combine_scheds needs one pct per schedule, got {len(pcts)} pcts and "
                         f"{len(scheds)} schedules")
    if any(p < 0 for p in pcts) or not math.isclose(sum(pcts), 1.0, abs_tol=1e-9):
        raise ValueError(f"combine_scheds: pcts must be >= 0 and sum to 1, got {pcts} (sum {sum(pcts):g})")
    bounds = []  # (start, length, schedule) of the stretches that have a length
    start = 0.0
    for p, s in zip(pcts, scheds):
        if p > 0:
            bounds.append((start, p, s))
        start += p

    def combined(pct: float) -> float:
        for start, length, sched in bounds:
            if pct < start + length:
                return sched(max(pct - start, 0.0) / length)
        start, length, sched = bounds[-1]  # pct == 1 (or a hair above): the end of the last stretch
        return sched(min((pct - start) / length, 1.0))
    return combined


def _check_one_cycle(max_lr, pct_start, div, div_final, anneal) -> None:
    check_number("OneCycle", "max_lr", max_lr, low_inclusive=False)
    if not 0 <= pct_start < 1:
        raise ValueError(f"OneCycle: pct_start (the warm-up fraction) must be in [0, 1), got {pct_start!r}")
    if not div > 0:
        raise ValueError(f"OneCycle: div must be > 0 (training starts at max_lr / div), got {div!r}")
    if div_final is not None and not div_final > 0:
        raise ValueError(f"OneCycle: div_final must be > 0 or None (training ends at max_lr / div_final), "
                         f"got {div_final!r}")
    if anneal not in ANNEALS:
        raise ValueError(f"OneCycle: anneal must be one of {ANNEALS}, got {anneal!r}")


def one_cycle_sched(max_lr: float, pct_start: float = 0.25, div: float = 10.0,
                    div_final: float | None = None, anneal: str = "linear") -> Schedule:
    """The 1cycle learning-rate schedule as a function of progress `pct` in [0, 1].

    Up from `max_lr / div` to `max_lr` during the first `pct_start` of training, then down to
    `max_lr / div_final`. With `anneal="linear"` (the walkthrough) both halves are straight
    lines and `div_final=None` ends at 0. With `anneal="cos"` both halves are half cosines and
    `div_final=None` ends at `max_lr / 1e4` (`COS_DIV_FINAL`).
    """
    _check_one_cycle(max_lr, pct_start, div, div_final, anneal)
    shape = sched_lin if anneal == "linear" else sched_cos
    if div_final is None:
        end = 0.0 if anneal == "linear" else max_lr / COS_DIV_FINAL
    else:
        end = max_lr / div_final
    return combine_scheds([pct_start, 1 - pct_start], [shape(max_lr / div, max_lr), shape(max_lr, end)])


def one_cycle_lrs(max_lr: float, n_steps: int, pct_start: float = 0.25, div: float = 10.0,
                  div_final: float | None = None, anneal: str = "linear") -> list[float]:
    """The learning rate of each of `n_steps` optimizer steps under 1cycle (as `OneCycle` sets them).

    Step i is at progress i / n_steps, so the list starts at `max_lr / div` and stops one step
    short of the final value.

    Example:
        >>> one_cycle_lrs(1.0, 4)
        [0.1, 1.0, 0.6666666666666667, 0.33333333333333337]
    """
    check_int("one_cycle_lrs", "n_steps", n_steps)
    sched = one_cycle_sched(max_lr, pct_start, div, div_final, anneal)
    return [sched(i / n_steps) for i in range(n_steps)]


class OneCycle(Callback):
    """Set the learning rate (and momentum) before every training batch along the 1cycle policy.

    Progress is `(epoch * n_iter + iter) / (n_epochs * n_iter)`; the lr at that progress comes
    from `one_cycle_sched` (by default the walkthrough's: up linearly from `max_lr / div` to
    `max_lr` over the first quarter, then linearly down to 0). Every parameter group gets it.

    With `moms` (default `(0.95, 0.85, 0.95)`), momentum goes from `moms[0]` to `moms[1]` during
    the warm-up and back to `moms[2]` afterwards, along the same shape: a high lr pairs with a low
    momentum. It is set as `group["momentum"]` for SGD-like groups and as `group["betas"][0]` for
    Adam-like groups. A group with no momentum key, or with momentum 0 when the fit starts (plain
    SGD, as in the walkthrough), is left alone: switching momentum on would change the optimizer,
    not schedule it. `moms=None` never touches momentum. When `fit` ends, every group gets back the
    momentum (or betas) it had before, so `torch.optim.SGD(..., momentum=0.9)` still says 0.9.

    Discriminative learning rates: with `max_lr=slice(start, stop)` each layer group (the model's
    splitter, `learn.layer_groups()`: body first, head last) gets its own cycle peaking at its own
    rate, spread geometrically from `start` (the first group) to `stop` (the head) (`group_lrs`); the
    optimizer's groups are split by layer group for it (`split_by_layer_groups`). `lrs` then holds
    the head's.

    Args:
        max_lr: the peak learning rate, or a `slice` of them (see above).
        pct_start: fraction of training spent warming up.
        div: training starts at `max_lr / div`.
        div_final: training ends at `max_lr / div_final`; None: 0 for linear, `max_lr / 1e4` for cos.
        anneal: "linear" (the walkthrough) or "cos".
        moms: (start, middle, end) momentum, or None.

    Events used: `before_fit` (reset), `before_train` (check), `before_batch` (set the hyper-parameters,
    training only), `after_fit` (give the optimizer its own momentum back). Writing another schedule
    is the same few lines: compute a value from progress and write it into every
    `learn.opt.param_groups[i]` (never into optimizer-specific attributes, so groundup and
    torch.optim optimizers both work).

    After `fit`, `lrs` and `moms` hold what was set per training batch.

    Example:
        >>> learn.fit(4, cbs=[OneCycle(0.1)])       # or: learn.fit_one_cycle(4, 0.1)
    """

    order = 10  # after SetupLearnerCB; before callbacks that read the lr (Recorder)

    def __init__(self, max_lr: float | slice | None = None, pct_start: float = 0.25, div: float = 10.0,
                 div_final: float | None = None, anneal: str = "linear",
                 moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95)) -> None:
        top = group_lrs(max_lr, 1)[0] if isinstance(max_lr, slice) else max_lr  # the head's (checks the slice)
        self.lr_sched = one_cycle_sched(top, pct_start, div, div_final, anneal)
        self._group_scheds: list[Schedule] | None = None  # one per layer group, for a slice (made at the first batch)
        if moms is not None:
            if len(moms) != 3 or not all(0 <= m < 1 for m in moms):
                raise ValueError(f"OneCycle: moms must be three momentums in [0, 1) (start, middle, end) "
                                 f"or None, got {moms!r}")
            shape = sched_lin if anneal == "linear" else sched_cos
            self.mom_sched = combine_scheds([pct_start, 1 - pct_start],
                                            [shape(moms[0], moms[1]), shape(moms[1], moms[2])])
        else:
            self.mom_sched = None
        self.max_lr, self.pct_start, self.div, self.div_final = max_lr, pct_start, div, div_final
        self.anneal, self.mom_cycle = anneal, moms
        self.lrs: list[float] = []   # the lr set before each training batch of the last fit
        self.moms: list[float] = []  # the momentum set (when any group has one)
        self._mom_keys: list[str | None] | None = None
        self._own_moms: list = []  # each group's momentum (or betas) before the schedule set it

    def before_fit(self) -> None:
        self.lrs, self.moms = [], []
        self._group_scheds = None
        self._mom_keys = None  # decided at the first batch: the optimizer is made after before_fit
        self._own_moms = []

    def before_train(self) -> None:
        if not self.learn.n_iter:
            raise ValueError("OneCycle needs the number of batches per epoch, but the training loader "
                             f"({type(self.learn.dl).__name__}) has no len(); give it a __len__")

    def before_batch(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        pct = (learn.epoch * learn.n_iter + learn.iter) / (learn.n_epochs * learn.n_iter)
        lr = self.lr_sched(pct)
        if isinstance(self.max_lr, slice):
            if self._group_scheds is None:
                layer_groups = learn.layer_groups()
                split_by_layer_groups(learn.opt, layer_groups)
                self._group_scheds = [one_cycle_sched(m, self.pct_start, self.div, self.div_final, self.anneal)
                                      for m in group_lrs(self.max_lr, len(layer_groups))]
            set_group_lrs(learn.opt, [sched(pct) for sched in self._group_scheds])
        else:
            for group in learn.opt.param_groups:
                group["lr"] = lr
        groups = learn.opt.param_groups
        self.lrs.append(lr)
        if self.mom_sched is None:
            return
        if self._mom_keys is None:
            self._mom_keys = [_momentum_key(group) for group in groups]
            self._own_moms = [group[key] if key else None for group, key in zip(groups, self._mom_keys)]
        mom = self.mom_sched(pct)
        for group, key in zip(groups, self._mom_keys):
            if key == "betas":
                group["betas"] = (mom, *group["betas"][1:])
            elif key == "momentum":
                group["momentum"] = mom
        if any(self._mom_keys):
            self.moms.append(mom)

    def after_fit(self) -> None:
        if not self._own_moms or self.learn.opt is None:
            return
        for group, key, own in zip(self.learn.opt.param_groups, self._mom_keys, self._own_moms):
            if key:
                group[key] = own
        self._own_moms = []

    def plot(self, path: str | os.PathLike | None = None):
        """The lrs (and momentums) set during the last fit, per training batch, as a matplotlib `Figure`
        (a notebook shows it inline; a PNG is written to `path` only when a path is given)."""
        from groundup.utils.plots import figure_axes, finish_figure

        if not self.lrs:
            raise ValueError("OneCycle.plot: nothing to plot yet; run learn.fit(...) with this callback first")
        fig, ax = figure_axes(title="one-cycle schedule", xlabel="training batch", ylabel="learning rate")
        ax.plot(self.lrs, color="C0", label="lr")
        if self.moms:
            ax2 = ax.twinx()
            ax2.plot(self.moms, color="C1", label="momentum")
            ax2.set_ylabel("momentum")
        return finish_figure(fig, path)

    def __repr__(self) -> str:
        return (f"OneCycle(max_lr={self.max_lr}, pct_start={self.pct_start}, div={self.div}, "
                f"div_final={self.div_final}, anneal={self.anneal!r}, moms={self.mom_cycle})")


def _momentum_key(group: dict) -> str | None:
    """Which key of `group` OneCycle sets: "betas" (Adam-like), "momentum" (non-zero), or None."""
    if "betas" in group:
        return "betas"
    if group.get("momentum", 0):
        return "momentum"
    return None


def plot_schedule(sched_fn: Schedule, path: str | os.PathLike | None = None, n: int = 200,
                  title: str = "schedule"):
    """`sched_fn(pct)` for `n` values of pct from 0 to 1, as a matplotlib `Figure` (a notebook shows it
    inline; a PNG is written to `path` only when a path is given).

    Example:
        >>> plot_schedule(one_cycle_sched(0.1, anneal="cos"))                    # inline in a notebook
        >>> plot_schedule(one_cycle_sched(0.1, anneal="cos"), "one_cycle.png")   # and a file
    """
    from groundup.utils.plots import figure_axes, finish_figure

    if n < 2:
        raise ValueError(f"plot_schedule: n must be >= 2 points, got {n}")
    pcts = [i / (n - 1) for i in range(n)]
    fig, ax = figure_axes(title=title, xlabel="training progress (pct)", ylabel="value")
    ax.plot(pcts, [sched_fn(p) for p in pcts])
    return finish_figure(fig, path)
