"""`EMA`: validate, save and finish with an exponential moving average of the weights.

While the learning rate is high, the weights after each step jump around a good region; their
average over the last few hundred steps sits nearer its middle. With one-cycle's high rates, the
average is much better than the weights themselves until the rate has annealed: on Imagenette at
64 px (`--recipe fast`, seed 2), after 14 of 25 epochs the weights validated 0.770 and their
average (decay 0.99) 0.818; at the end the two agree (README, "The fast recipe").

After every optimizer step the average moves towards the weights:
`avg = d * avg + (1 - d) * weights`, with `d = min(decay, (1 + t) / (10 + t))` at the t-th step,
so that the first steps' random weights weigh little. Every floating-point entry of the model's
`state_dict` is averaged: parameters, and buffers such as BatchNorm's running statistics.

Training always goes on from the trained weights; the average takes their place from the end of
each training pass until the next one starts. So the validation pass, the epoch's row, `best.pt`,
`model.pt` and the model after `fit` all hold the average, and what `groundup evaluate`,
`predict` and `export` read is what was validated. The trained weights and the average travel in
the callback's state (`state_dict`, saved in every checkpoint), so a resumed run goes on from the
trained weights exactly. It keeps two copies of the model's floating-point state in memory.

Example:
    >>> learn.fit_one_cycle(25, 0.2, cbs=[EMA(0.99)])
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundup.callbacks.core import Callback
from groundup.utils.checks import check_number

__all__ = ["EMA"]


class EMA(Callback):
    """Keep an exponential moving average of the weights, and put it in their place outside training.

    Args:
        decay: how much of the average each step keeps, in (0, 1): about `1 / (1 - decay)` steps
            make the average (0.99: the last hundred or so).

    A new `fit` starts a new average from the model's weights as they are (after an earlier fit with
    this callback: the earlier average); a fit resumed from a checkpoint goes on with the saved one.
    """

    order = 25  # after the optimizer's step; before TrackResults (50) and Checkpoint (60) end the epoch
    during_lr_find = False

    def __init__(self, decay: float = 0.99) -> None:
        check_number("EMA", "decay", decay, 0.0, 1.0, low_inclusive=False)
        self.decay = float(decay)
        self.steps = 0
        self.average: list[Tensor] | None = None
        self.trained: list[Tensor] | None = None  # the trained weights while the average is in the model
        self._loaded: dict | None = None

    def _state(self) -> list[Tensor]:
        """The model's floating-point state, detached tensors sharing memory with its parameters and buffers."""
        return [v for v in self.learn.unwrapped_model.state_dict().values()
                if v.is_floating_point()]

    def before_fit(self) -> None:
        state = self._state()
        loaded, self._loaded = self._loaded, None
        if loaded is not None:  # resumed: the model holds the saved average
            self.steps = loaded["steps"]
            self.average = [t.to(v.device) for t, v in zip(loaded["average"], state)]
            trained = loaded["trained"]
            self.trained = None if trained is None else [t.to(v.device) for t, v in zip(trained, state)]
            return
        self.steps, self.trained = 0, None
        self.average = [v.clone() for v in state]

    def before_train(self) -> None:
        if self.trained is not None:  # the average steps aside: training goes on from the trained weights
            _copy(self._state(), self.trained)
            self.trained = None

    def after_step(self) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():  # all tensors in one call (one kernel per group on a GPU)
            torch._foreach_lerp_(self.average, self._state(), 1 - d)

    def after_train(self) -> None:
        state = self._state()
        self.trained = [v.clone() for v in state]
        _copy(state, self.average)

    def state_dict(self) -> dict:
        """The step count, the average and (between epochs) the trained weights, on the CPU."""
        def cpu(ts):
            return None if ts is None else [t.detach().cpu() for t in ts]
        return {"decay": self.decay, "steps": self.steps, "average": cpu(self.average), "trained": cpu(self.trained)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("average") is None:
            return
        if state.get("decay") != self.decay:
            raise ValueError(f"EMA: the checkpoint's average was made with decay {state.get('decay')}, "
                             f"this callback has {self.decay}; use the same decay to resume")
        self._loaded = dict(state)

    def __repr__(self) -> str:
        return f"EMA({self.decay})"


def _copy(into: list[Tensor], values: list[Tensor]) -> None:
    with torch.no_grad():
        for t, v in zip(into, values):
            t.copy_(v)
