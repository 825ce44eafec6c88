"""`LRFinder`: the learning-rate range test (Smith 2015, "Cyclical Learning Rates for Training Neural Networks").

Train for a little while with a learning rate that grows by a constant factor after every batch,
record the loss at each lr, and stop when the lr passes `max_lr` or the loss blows up. The plot of
loss against lr (log scale) shows where training makes fast progress and where it breaks down.
The model and optimizer are put back exactly as they were afterwards, so the test costs nothing
but time.

Usually called through `Learner.lr_find`:

    >>> suggestion = learn.lr_find()          # a notebook shows the plot; lr_find(path="lr_find.png") writes it
    >>> learn.fit_one_cycle(5, suggestion.lr)

Which lr to read off the curve was measured (README, "--lr auto"): with SGD, fastai's `slide` (the
default here); with AdamW, `lr_find(method="rise", cap=0.01)`: 0.01 unless the loss rises early.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field, replace

import numpy as np

from groundup.callbacks.core import Callback, CancelFitException, CancelValidateException
from groundup.utils.checks import check_int
from groundup.utils.rng import get_rng_state, set_rng_state
from groundup.utils.smoothing import EMA

__all__ = ["METHODS", "LRFinder", "LRSuggestion", "lr_find_figure", "smooth_curve", "suggest_lr"]

# method=None: the first that applies, in this order ("rise" is never reached: "min/10" always applies)
METHODS = ("slide", "valley", "steepest", "min/10", "rise")
MIN_VALLEY = 3  # points a descending stretch needs to count as a valley
RISE, RISE_MULT = 0.05, 2.0  # "rise": twice the last lr before the smoothed loss climbs 5 % above its minimum


@dataclass(frozen=True)
class LRSuggestion:
    """A suggested learning rate, how it was found, and the (finite) points it was found from.

    `float(suggestion)` is `suggestion.lr`; `suggestion.plot()` draws the curve with it marked, and a
    notebook shows that plot (and the suggestion) when `learn.lr_find()` ends a cell.
    """

    lr: float
    method: str
    lrs: list[float] = field(repr=False)
    losses: list[float] = field(repr=False)
    finder: LRFinder | None = field(default=None, repr=False, compare=False)  # the finder that made it, if any
    cap: float | None = None  # the bound the lr was held to (`suggest_lr`'s cap), if any

    def __float__(self) -> float:
        return self.lr

    def describe(self) -> str:
        """How the lr was found, for messages: the method, and what the cap did if there was one
        ("rise; held to the cap 0.01": the rule found a larger lr, the cap was taken)."""
        if self.cap is None:
            return self.method
        return f"{self.method}; {'held to' if self.lr >= self.cap else 'below'} the cap {self.cap:g}"

    def plot(self, path: str | os.PathLike | None = None):
        """The lr-finder curve with this suggestion marked, as a matplotlib `Figure` (a PNG at `path`
        when a path is given). The finder's whole record when it is known, else the points kept here."""
        f = self.finder
        if f is None:
            return lr_find_figure(self.lrs, self.losses, self, beta=0.85, explode=None, path=path)
        return lr_find_figure(f.lrs, f.losses, self, f.beta, f.explode, path)

    def _ipython_display_(self) -> None:
        """In a notebook: the plot, then the suggestion (as fastai's `lr_find` shows them)."""
        from IPython.display import display

        display(self.plot())
        display({"text/plain": repr(self)}, raw=True)


def smooth_curve(values: list[float], beta: float) -> list[float]:
    """Smooth `values` with an exponential moving average run forwards, then backwards.

    One pass of an EMA lags behind the curve (here: it would shift the curve towards larger lrs);
    running it again backwards cancels the lag. Each pass is bias-corrected (divided by
    1 - beta**k, as in Adam) so the ends are not pulled towards 0. `beta=0` returns the values.
    """
    def ema(xs: list[float]) -> list[float]:
        avg = EMA(beta)
        return [avg.update(x) for x in xs]
    if beta == 0:
        return list(values)
    return ema(ema(list(values))[::-1])[::-1]


def _longest_descent(smooth: list[float]) -> tuple[int, int]:
    """(start, end) indices (inclusive) of the longest run where the curve goes down at every step."""
    best = (0, 0)
    start = 0
    for i in range(1, len(smooth)):
        if smooth[i] >= smooth[i - 1]:
            start = i
        elif i - start > best[1] - best[0]:
            best = (start, i)
    return best


def _before_explosion(ys: list[float], explode: float | None) -> int:
    """How many leading points come before the first loss above `explode` × the lowest loss before it."""
    if explode is None:
        return len(ys)
    low = ys[0] if ys else 0.0
    for i, y in enumerate(ys[1:], 1):
        if low > 0 and y > explode * low:
            return i
        low = min(low, y)
    return len(ys)


def _before_rise(smooth: list[float], i_min: int) -> int:
    """The index of the last point before the smoothed loss, past its minimum, first climbs `RISE`
    above that minimum (the last point if it never does)."""
    limit = smooth[i_min] + RISE * abs(smooth[i_min])
    return next((i - 1 for i in range(i_min + 1, len(smooth)) if smooth[i] > limit), len(smooth) - 1)


SLIDE_DIFF, SLIDE_THRESH = 15, 0.005  # fastai's `slide` defaults (fastai.callback.schedule)


def _slide(losses: list[float]) -> int | None:
    """fastai's `slide` rule on `losses` (see `suggest_lr`): the index of the suggested lr, or None."""
    avg = EMA(0.98)
    smooth = [avg.update(x) for x in losses]
    first, last = len(smooth) // 10, len(smooth) - 5
    curve = smooth[first:last]
    if len(curve) <= SLIDE_DIFF or int(np.argmin(curve)) == 0:  # too short, or no descent to slide down
        return None
    grad = np.gradient(curve)
    r, left = -1, -1 - SLIDE_DIFF
    found = len(curve) + left
    while left >= -len(curve) and abs(grad[r] - grad[left]) > SLIDE_THRESH:
        found = len(curve) + left
        r, left = r - 1, left - 1
    return first + found


def suggest_lr(lrs: list[float], losses: list[float], beta: float = 0.85,
               method: str | None = None, explode: float | None = 4.0, cap: float | None = None) -> LRSuggestion:
    """Suggest a learning rate from an lr-finder curve (`losses[i]` recorded at `lrs[i]`).

    Points whose loss is NaN or infinite are dropped first, and so is the exploded tail: from the
    first loss above `explode` × the lowest loss before it (one huge last loss, smoothed
    backwards, would otherwise tilt the whole curve upwards). The rest is smoothed (`smooth_curve`)
    and, with `method=None`, the first of these that applies is used:

    - "slide": fastai's `slide` rule, measured to be the one that helps (README, "--lr auto"): on
      the raw losses smoothed as fastai's Recorder does (EMA, beta 0.98, bias-corrected; the first
      10 % and the last 5 points dropped), walk down from the largest lr while the slope there
      differs by more than 0.005 from the slope 15 points lower; the lr where it stops. It lands near
      the largest lr that still trains well, where "valley" picks a much smaller one (the default
      one-cycle schedule warms up and anneals around it). Needs more than 15 points and a descent.
    - "valley": take the longest stretch where the smoothed loss goes down at every step (at
      least `MIN_VALLEY` points), and within it the point where the loss falls fastest per unit
      of log(lr). The idea is fastai's "valley": the lr the loss is still falling fastest at,
      in the main descent rather than in a noisy dip.
    - "steepest": the point with the most negative slope d loss / d log(lr) before the minimum
      of the smoothed curve (needs a minimum that is not the first point).
    - "min/10": a tenth of the lr at the minimum of the smoothed curve (works with one point).
    - "rise" (only when asked for; `min/10` always applies before it): twice (`RISE_MULT`) the
      largest lr before the smoothed loss, past its minimum, climbs 5 % (`RISE`) above it (the top
      of the range where the loss is still at its lowest; one-cycle reaches its peak lr only
      briefly). With `cap`, the rule `groundup train --lr auto` uses for AdamW: keep the default lr
      (the cap) unless the curve rises before half of it (README, "--lr auto").

    `cap`, when given, bounds the suggestion of any method from above (`lr = min(lr, cap)`).

    Args:
        lrs, losses: the recorded curve, same length, lrs increasing.
        beta: smoothing factor in [0, 1) (0: no smoothing).
        method: force one of `METHODS`; an error if it does not apply to this curve.
        explode: where the exploded tail starts (as `LRFinder`'s stopping rule); None keeps it.
        cap: the largest lr to suggest (None: no bound).

    Raises:
        ValueError: no finite point at all, mismatched lengths, a forced method that does not apply,
            or a cap that is not a positive number.
    """
    if len(lrs) != len(losses):
        raise ValueError(f"suggest_lr: lrs and losses must have the same length, got {len(lrs)} and {len(losses)}")
    if method is not None and method not in METHODS:
        raise ValueError(f"suggest_lr: method must be one of {METHODS} or None, got {method!r}")
    if cap is not None and not 0 < cap < math.inf:
        raise ValueError(f"suggest_lr: cap must be a positive number (the largest lr to suggest), got {cap!r}")
    pts = [(float(lr), float(loss)) for lr, loss in zip(lrs, losses) if math.isfinite(loss) and lr > 0]
    if not pts:
        raise ValueError(f"no finite losses to suggest an lr from ({len(losses)} recorded); the loss was "
                         f"NaN/inf from the start: try a smaller start_lr, or check the data and loss")
    raw_pts = pts
    pts = pts[:_before_explosion([p[1] for p in pts], explode)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    smooth = smooth_curve(ys, beta)
    i_min = int(np.argmin(smooth))
    slopes = np.gradient(smooth, np.log10(xs)) if len(xs) >= 2 else np.zeros(1)

    def valley() -> int | None:
        a, b = _longest_descent(smooth)
        return a + int(np.argmin(slopes[a:b + 1])) if b - a + 1 >= MIN_VALLEY else None

    def steepest() -> int | None:
        return int(np.argmin(slopes[:i_min])) if i_min > 0 else None  # the minimum itself is no candidate

    def slide() -> int | None:
        return _slide([loss for _, loss in raw_pts[:len(pts)]])

    def at(i: int | None) -> float | None:
        return None if i is None else xs[i]

    rules = {"slide": lambda: at(slide()), "valley": lambda: at(valley()), "steepest": lambda: at(steepest()),
             "min/10": lambda: xs[i_min] / 10, "rise": lambda: RISE_MULT * xs[_before_rise(smooth, i_min)]}
    for name in METHODS if method is None else (method,):
        lr = rules[name]()  # None: the rule does not apply to this curve
        if lr is not None:
            return LRSuggestion(lr if cap is None else min(lr, cap), name, xs, ys, cap=cap)
    raise ValueError(f"suggest_lr: method {method!r} does not apply to this curve ({len(xs)} finite points, "
                     f"minimum at point {i_min}); use method=None to fall back automatically")


class LRFinder(Callback):
    """The learning-rate range test as a callback; `Learner.lr_find` runs it for you.

    In `before_fit` it saves the exact training state (model weights and buffers, the optimizer's
    state or the fact that there is none yet, `learn.lr`, the RNG states, the float16 gradient
    scaler's scale) and starts at `start_lr`.
    After every training batch it records (lr, loss) and multiplies every group's lr by `mult` (with
    discriminative lrs, `lr_find(start_lr=slice(...))`, the head's lr is the one recorded).
    Fitting stops (`CancelFitException`) when the next lr would exceed `max_lr`, after `max_iter`
    batches, when the loss is NaN or infinite, or when the smoothed loss exceeds `explode` times
    the best smoothed loss so far. Validation is skipped; if one epoch is too short, training goes
    on into the next (`epochs_needed` says how many). `after_fit` restores the saved state, so the
    model, optimizer, gradient scaler and RNG are bit-identical to before.

    Args:
        start_lr: the first learning rate.
        mult: the factor applied to the lr after each batch (> 1).
        max_lr: stop once the lr would exceed this.
        max_iter: stop after this many batches (None: no limit).
        explode: stop when the smoothed loss exceeds `explode` × the best smoothed loss.
        beta: smoothing factor of the loss curve (for the explosion rule and the suggestion).

    Events used: `before_fit` (save, start), `after_loss` (record, NaN/explosion rules: it raises
    `CancelFitException` before the step), `after_batch` (grow the lr, lr/iteration limits),
    `before_validate` (`CancelValidateException`), `after_fit` (restore: it runs after a cancel
    or an error too, which makes it the right place for any clean-up).

    After `fit`: `lrs` and `losses` (raw, per batch), `suggestion()`, `plot()` (a `Figure`; `plot(path)`
    also writes a PNG).
    """

    order = 60  # after the callbacks that prepare the batch; it only reads the loss

    def __init__(self, start_lr: float = 1e-6, mult: float = 1.2, max_lr: float = 10.0,
                 max_iter: int | None = None, explode: float = 4.0, beta: float = 0.85) -> None:
        if not 0 < start_lr < max_lr < math.inf:
            raise ValueError(f"LRFinder: need 0 < start_lr < max_lr < inf, got start_lr={start_lr!r}, "
                             f"max_lr={max_lr!r}")
        if not 1 < mult < math.inf:
            raise ValueError(f"LRFinder: mult must be > 1 (the lr grows by it every batch), got {mult!r}")
        if max_iter is not None:
            check_int("LRFinder", "max_iter", max_iter)
        if not explode > 1:
            raise ValueError(f"LRFinder: explode must be > 1 (a multiple of the best loss), got {explode!r}")
        if not 0 <= beta < 1:
            raise ValueError(f"LRFinder: beta must be in [0, 1), got {beta!r}")
        self.start_lr, self.mult, self.max_lr, self.max_iter = start_lr, mult, max_lr, max_iter
        self.explode, self.beta = explode, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self._avg, self._best = EMA(beta), math.inf  # running loss average and best smoothed loss (explosion rule)
        self._saved: dict | None = None  # what after_fit restores

    # -- how long ----------------------------------------------------------------------------------
    def n_batches_needed(self) -> int:
        """Training batches from `start_lr` until the lr passes `max_lr` (capped by `max_iter`)."""
        # Count exactly as the callback steps (repeated float multiplication), not with a logarithm
        # that could be off by one; capped, so a mult close to 1 cannot loop for long.
        cap = self.max_iter if self.max_iter is not None else 10_000_000
        lr, n = self.start_lr, 0
        while lr <= self.max_lr and n < cap:
            n += 1
            lr *= self.mult
        return n

    def epochs_needed(self, learn) -> int:
        """Epochs of `len(learn.dls.train)` batches needed to reach `max_lr` (or `max_iter` batches).

        A training loader without a length is counted as one batch per epoch (an upper bound):
        the finder stops by itself when it is done.
        """
        n = self.n_batches_needed()
        per_epoch = len(learn.dls.train) if hasattr(learn.dls.train, "__len__") else 1
        return max(1, math.ceil(n / max(per_epoch, 1)))

    # -- events ------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        learn = self.learn
        self._saved = {
            "model": copy.deepcopy(learn.unwrapped_model.state_dict()),
            "model_training": learn.unwrapped_model.training,
            "opt": None if learn.opt is None else copy.deepcopy(learn.opt.state_dict()),
            # the groups themselves too: a finder run with a slice splits them by layer group
            "groups": None if learn.opt is None else [{**g, "params": list(g["params"])} for g in learn.opt.param_groups],
            "lr": learn.lr,
            "rng": get_rng_state(),
            # MixedPrecision (order -5) has set the fp16 gradient scaler already; the finder's exploding
            # losses lower its scale, which the real fit must not inherit
            "scaler": None if learn.grad_scaler is None else copy.deepcopy(learn.grad_scaler.state_dict()),
        }
        self.lrs, self.losses = [], []
        self._avg, self._best = EMA(self.beta), math.inf
        self.learn.lr = self.start_lr  # fit gives it to the optimizer right after before_fit

    def after_loss(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        # One host sync per batch: fine here, since the stopping rules need the loss value now.
        loss = learn.loss.detach().float().item()
        self.lrs.append(float(learn.opt.param_groups[-1]["lr"]))  # the head's (the highest, with discriminative lrs)
        self.losses.append(loss)
        if not math.isfinite(loss):
            raise CancelFitException
        smooth = self._avg.update(loss)
        self._best = min(self._best, smooth)
        if smooth > self.explode * self._best:
            raise CancelFitException

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        groups = learn.opt.param_groups
        if groups[-1]["lr"] * self.mult > self.max_lr or (self.max_iter is not None and len(self.losses) >= self.max_iter):
            raise CancelFitException
        for group in groups:  # every group's own rate grows (discriminative lrs keep their ratios)
            group["lr"] = group["lr"] * self.mult

    def before_validate(self) -> None:
        raise CancelValidateException  # the range test only trains

    def after_fit(self) -> None:
        if self._saved is None:
            return
        learn, saved = self.learn, self._saved
        learn.unwrapped_model.load_state_dict(saved["model"])  # copies into the existing tensors
        learn.unwrapped_model.train(saved["model_training"])
        if saved["opt"] is None:
            learn.opt = None  # the next fit makes a fresh optimizer, as it would have
        else:
            learn.opt.param_groups[:] = saved["groups"]
            learn.opt.load_state_dict(saved["opt"])
        learn.lr = saved["lr"]
        if saved["scaler"] is not None and learn.grad_scaler is not None:  # put back before the Learner drops it
            learn.grad_scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        self._saved = None

    # -- results -----------------------------------------------------------------------------------
    def suggestion(self, method: str | None = None, cap: float | None = None) -> LRSuggestion:
        """Suggest an lr from the recorded curve (see `suggest_lr` for the methods, fallbacks and `cap`)."""
        if not self.losses:
            raise ValueError("LRFinder.suggestion: nothing recorded; run learn.lr_find() (or a fit with "
                             "this callback) first")
        found = suggest_lr(self.lrs, self.losses, beta=self.beta, method=method, explode=self.explode, cap=cap)
        return replace(found, finder=self)  # so that `suggestion.plot()` draws this finder's whole curve

    def plot(self, path: str | os.PathLike | None = None, method: str | None = None, cap: float | None = None):
        """Loss against lr (log scale) with `suggestion(method, cap)` marked, as a matplotlib `Figure`.

        A notebook shows the figure inline; a PNG is written to `path` only when a path is given.
        NaN/inf losses are left out; if no lr can be suggested the curve is drawn without a mark.
        The y axis spans the curve before its explosion, so a huge last loss does not flatten the rest.
        The suggestion itself is `suggestion()`.
        """
        try:
            sugg = self.suggestion(method, cap)
        except ValueError:
            sugg = None
        return lr_find_figure(self.lrs, self.losses, sugg, self.beta, self.explode, path)

    def __repr__(self) -> str:
        return (f"LRFinder(start_lr={self.start_lr}, mult={self.mult}, max_lr={self.max_lr}, "
                f"max_iter={self.max_iter}, explode={self.explode})")


def lr_find_figure(lrs: list[float], losses: list[float], sugg: LRSuggestion | None, beta: float,
                   explode: float | None, path: str | os.PathLike | None = None):
    """Loss against lr (log scale), raw and smoothed, with `sugg` marked, as a `Figure` (see `LRFinder.plot`)."""
    from groundup.utils.plots import figure_axes, finish_figure

    pts = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    fig, ax = figure_axes(title="learning rate finder", xlabel="learning rate (log scale)", ylabel="loss")
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, color="C0", alpha=0.3, label="loss")
        # the smoothed curve the suggestion was read from (the exploded tail cut off)
        sx, sy = (sugg.lrs, sugg.losses) if sugg is not None else (list(xs), list(ys))
        ax.plot(sx, smooth_curve(sy, beta), color="C0", label="smoothed")
    if sugg is not None:
        i = min(range(len(sugg.lrs)), key=lambda k: abs(math.log(sugg.lrs[k] / sugg.lr)))
        y = smooth_curve(sugg.losses, beta)[i]
        ax.axvline(sugg.lr, color="C3", linestyle="--", linewidth=1)
        ax.plot([sugg.lr], [y], "o", color="C3", label=f"{sugg.method}: {sugg.lr:.2e}")
    ax.set_xscale("log")
    if pts:
        kept = ys[:max(2, _before_explosion(list(ys), explode))]
        low, high = min(kept), max(kept)
        pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
        ax.set_ylim(low - pad, high + pad)
        ax.legend()
    return finish_figure(fig, path)
