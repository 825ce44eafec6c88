import copy
import math
from functools import partial

import numpy as np
import pytest
import torch
from conftest import PNG_SIGNATURE, Points, groundup_mlp
from torch import nn

from groundup.callbacks.lr_finder import LRFinder, LRSuggestion, smooth_curve, suggest_lr
from groundup.learner import Callback, CancelFitException, Learner
from groundup.losses import cross_entropy
from groundup.optim import SGD


def torch_mlp_with_dropout():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


class Scripted:
    """A loss whose values follow a script, one per call (the gradient path is real but zero)."""
    def __init__(self, values):
        self.values, self.calls = list(values), 0
    def __call__(self, preds, yb):
        v = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return preds.float().mean() * 0 + v


NAN, INF = float("nan"), float("inf")


# -- stopping rules --------------------------------------------------------------------------------

@pytest.mark.parametrize("losses, kwargs, n_expected, why", [
    ([1.0], {}, 10, "the next lr (1e-3 * 2**10) would pass max_lr=1"),
    ([1.0, 1.0, NAN, 1.0], {}, 3, "NaN loss"),
    ([1.0, 1.0, INF, 1.0], {}, 3, "inf loss"),
    ([1.0, 1.0, -INF, 1.0], {}, 3, "-inf loss"),
    ([1.0, 1.0, 1.0, 100.0, 1.0], {}, 4, "smoothed loss > 4 x best"),
    ([4.0, 2.0, 1.0, 3.9, 3.9], {"beta": 0.0}, 10, "3.9 < 4 x best: no explosion"),
    ([4.0, 2.0, 1.0, 3.9, 3.9], {"beta": 0.0, "explode": 3.0}, 4, "3.9 > 3 x best"),
    ([1.0], {"max_iter": 3}, 3, "max_iter"),
])
def test_stopping_rules(losses, kwargs, n_expected, why):
    finder = LRFinder(start_lr=1e-3, mult=2.0, max_lr=1.0, **kwargs)
    dls = Points(n=128, bs=24)  # 4 training batches per epoch: the finder runs across epochs
    learn = Learner(nn.Linear(2, 2), dls, Scripted(losses), lr=0.1)
    learn.fit(finder.epochs_needed(learn), cbs=[finder])
    assert len(finder.losses) == n_expected, why
    assert finder.lrs == pytest.approx([1e-3 * 2 ** k for k in range(n_expected)])
    assert finder.losses == pytest.approx(losses[:n_expected] + [losses[-1]] * (n_expected - len(losses)),
                                          nan_ok=True)


@pytest.mark.parametrize("kwargs, batches_per_epoch, n_batches, n_epochs", [
    ({"start_lr": 1e-3, "mult": 10.0, "max_lr": 1.0}, 100, 4, 1),     # 1e-3, 1e-2, 1e-1, 1: then 10 > 1
    ({"start_lr": 1e-3, "mult": 10.0, "max_lr": 1.0}, 3, 4, 2),
    ({"start_lr": 1e-6, "mult": 1.2, "max_lr": 10.0}, 6, 89, 15),     # the defaults: 1.2**88 < 1e7 < 1.2**89
    ({"start_lr": 1e-6, "mult": 1.2, "max_lr": 10.0, "max_iter": 12}, 6, 12, 2),
    ({"start_lr": 1e-3, "mult": 2.0, "max_lr": 1.5e-3}, 6, 1, 1),
])
def test_epochs_needed(kwargs, batches_per_epoch, n_batches, n_epochs):
    finder = LRFinder(**kwargs)
    class Dls:
        train, valid = [None] * batches_per_epoch, []
    assert finder.n_batches_needed() == n_batches
    assert finder.epochs_needed(Learner(nn.Linear(2, 2), Dls(), cross_entropy)) == n_epochs


def test_validation_is_skipped():
    seen = []
    class Probe(Callback):
        def after_loss(self):
            seen.append(self.learn.training)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, cbs=[Probe()])
    learn.lr_find(path=None, max_iter=20)
    assert seen == [True] * 20


# -- restoring the exact state ---------------------------------------------------------------------

def opt_state_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if isinstance(x, dict):
            if not isinstance(y, dict) or not opt_state_equal(x, y):
                return False
        elif isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and torch.equal(x, y)):
                return False
        elif isinstance(x, list) and x and isinstance(x[0], dict):
            if len(x) != len(y) or not all(opt_state_equal(p, q) for p, q in zip(x, y)):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("model_fn, opt_func", [
    (groundup_mlp, partial(SGD, momentum=0.9)),
    (torch_mlp_with_dropout, torch.optim.AdamW),
])
def test_lr_find_restores_model_optimizer_lr_and_rng_bit_for_bit(model_fn, opt_func):
    learn = Learner(model_fn(), Points(), cross_entropy, lr=0.05, opt_func=opt_func)
    learn.fit(1)  # an optimizer with momentum/Adam state exists now
    params = [p.detach().clone() for p in learn.model.parameters()]
    opt, opt_state = learn.opt, copy.deepcopy(learn.opt.state_dict())
    rng = torch.get_rng_state()
    learn.lr_find(path=None)
    assert all(torch.equal(a, b) for a, b in zip(params, learn.model.parameters()))
    assert learn.opt is opt and opt_state_equal(opt_state, learn.opt.state_dict())
    assert learn.lr == 0.05 and torch.equal(torch.get_rng_state(), rng)


def test_lr_find_before_any_fit_leaves_no_optimizer():
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.05)
    learn.lr_find(path=None, max_iter=5)
    assert learn.opt is None and learn.lr == 0.05


@pytest.mark.parametrize("model_fn, opt_func, fit_first", [
    (groundup_mlp, partial(SGD, momentum=0.9), False),
    (groundup_mlp, partial(SGD, momentum=0.9), True),
    (torch_mlp_with_dropout, torch.optim.AdamW, False),
    (torch_mlp_with_dropout, torch.optim.AdamW, True),
])
def test_a_fit_after_lr_find_matches_a_fit_without_it(model_fn, opt_func, fit_first):
    def run(with_lr_find):
        torch.manual_seed(1)
        learn = Learner(model_fn(), Points(), cross_entropy, lr=0.05, opt_func=opt_func)
        if fit_first:
            learn.fit(1)
        if with_lr_find:
            learn.lr_find(path=None)
        learn.fit(2)
        return [p.detach().clone() for p in learn.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(run(False), run(True)))


def test_the_model_is_restored_after_an_error_too():
    class Boom(Callback):
        def after_batch(self):
            if self.learn.iter == 3:
                raise RuntimeError("boom")
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.05, cbs=[Boom()])
    params = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(RuntimeError, match="boom"):
        learn.lr_find(path=None)
    assert all(torch.equal(a, b) for a, b in zip(params, learn.model.parameters()))
    assert learn.opt is None and learn.lr == 0.05


# -- suggestions -----------------------------------------------------------------------------------

LRS = [1e-6 * 1.2 ** k for k in range(89)]


def sigmoid_curve(lr):
    """Flat, then a descent steepest at lr = 10**-2.5, a minimum, then an explosion."""
    x = math.log10(lr)
    return 0.5 + 1.8 / (1 + math.exp(3 * (x + 2.5))) + math.exp(3 * (x + 0.5))


def noisy(ys, scale, seed=0):
    rng = np.random.default_rng(seed)
    return [y * (1 + scale * rng.standard_normal()) for y in ys]


CURVE = [sigmoid_curve(lr) for lr in LRS]
U_LRS = [10 ** (k / 10) for k in range(-40, 11)]           # 1e-4 .. 10, 51 points
U_CURVE = [(math.log10(lr) + 1) ** 2 + 1 for lr in U_LRS]  # a parabola in log(lr), minimum at 0.1
with_nans = list(CURVE)
with_nans[10], with_nans[40], with_nans[60] = NAN, INF, NAN


@pytest.mark.parametrize("lrs, losses, kwargs, method, low, high", [
    (LRS, CURVE, {"method": "valley"}, "valley", 10 ** -2.75, 10 ** -2.4),     # around the steepest point
    (LRS, noisy(CURVE, 0.05), {"method": "valley"}, "valley", 1e-3, 1e-2),
    (LRS, noisy(CURVE, 0.2, seed=1), {"method": "valley"}, "valley", 5e-4, 1e-2),
    (LRS, with_nans, {"method": "valley"}, "valley", 10 ** -2.75, 10 ** -2.4),  # NaN/inf points are dropped
    (LRS, CURVE, {"beta": 0.0, "method": "steepest"}, "steepest", 10 ** -2.55, 10 ** -2.45),
    (U_LRS, U_CURVE, {"beta": 0.0, "method": "min/10"}, "min/10", 0.0099, 0.0101),
    (U_LRS, U_CURVE, {"beta": 0.0, "method": "valley"}, "valley", 1e-4, 1.3e-4),    # a parabola is steepest at its left end
    (U_LRS, [float(k) for k in range(51)], {}, "min/10", 1e-5, 1e-5),  # only rising: the first lr / 10
    ([1e-3], [2.0], {}, "min/10", 1e-4, 1e-4),                # a single point
    # no descent of 3 points: the steepest slope before the minimum (0.9), between 2.8 and 1.2
    ([10.0 ** k for k in range(-3, 4)], [3.0, 2.8, 2.9, 1.2, 1.6, 0.9, 5.0], {"beta": 0.0}, "steepest", 0.1, 0.1),
])
def test_suggestion_on_synthetic_curves(lrs, losses, kwargs, method, low, high):
    s = suggest_lr(lrs, losses, **kwargs)
    assert s.method == method and low * (1 - 1e-9) <= s.lr <= high * (1 + 1e-9)
    assert all(math.isfinite(v) for v in s.losses) and len(s.lrs) == len(s.losses)


@pytest.mark.parametrize("lrs, losses, kwargs, match", [
    ([1e-3, 1e-2], [NAN, INF], {}, r"no finite losses to suggest an lr from \(2 recorded\)"),
    ([1e-3, 1e-2], [1.0], {}, "same length, got 2 and 1"),
    ([1e-3, 1e-2, 1e-1], [1.0, 2.0, 3.0], {"method": "valley"}, "method 'valley' does not apply"),
    ([1e-3], [1.0], {"method": "fastest"}, "method must be one of"),
])
def test_suggestion_errors_say_what_went_wrong(lrs, losses, kwargs, match):
    with pytest.raises(ValueError, match=match):
        suggest_lr(lrs, losses, **kwargs)


def test_smoothing_is_bias_corrected_and_does_not_lag():
    assert smooth_curve([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    line = [float(k) for k in range(20)]
    # Forwards then backwards: no shift mid-curve (a single forward pass would lag by beta / (1 - beta) = 1).
    assert smooth_curve(line, 0.5)[10] == pytest.approx(10.0, abs=0.01)


def test_suggestion_is_a_frozen_dataclass():
    s = LRSuggestion(0.1, "valley", [0.1], [1.0])
    with pytest.raises(AttributeError):
        s.lr = 0.2
    assert float(s) == 0.1 and "lrs" not in repr(s)


# -- end to end ------------------------------------------------------------------------------------

def _marked(fig) -> list[float]:
    """The lrs marked on an lr-finder figure (the dashed vertical line at the suggestion)."""
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    return [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == "--"]


def test_plot_returns_a_figure_and_writes_a_file_only_when_given_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finder = LRFinder()
    finder.lrs, finder.losses = list(LRS), list(with_nans)
    assert _marked(finder.plot()) == [finder.suggestion().lr]
    assert list(tmp_path.iterdir()) == []  # no path, no file
    finder.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG_SIGNATURE


def test_lr_find_returns_a_suggestion_that_plots_its_curve_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.05)
    s = learn.lr_find()
    assert _marked(s.plot()) == [s.lr] and list(tmp_path.iterdir()) == []
    s.plot(tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes()[:8] == PNG_SIGNATURE
    assert s == suggest_lr(s.lrs, s.losses, explode=4.0)  # the plot is no part of the value


def test_lr_find_end_to_end_stops_by_itself_and_writes_the_plot(tmp_path):
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.05)
    path = tmp_path / "lr_find.png"
    s = learn.lr_find(path=path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert 2 <= len(s.lrs) <= 89 and s.method in ("slide", "valley", "steepest", "min/10")
    assert math.isfinite(s.lr) and 1e-7 <= s.lr <= 10.0


def test_plot_survives_nans_and_an_empty_record(tmp_path):
    finder = LRFinder()
    finder.lrs, finder.losses = list(LRS), list(with_nans)
    assert finder.suggestion().method == "slide"
    assert _marked(finder.plot(tmp_path / "a.png")) == [finder.suggestion().lr]
    finder.lrs, finder.losses = [1e-3, 1e-2], [NAN, NAN]
    assert _marked(finder.plot(tmp_path / "b.png")) == []  # no lr to suggest: the curve without a mark
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="nothing recorded"):
        LRFinder().suggestion()


@pytest.mark.parametrize("kwargs, match", [
    ({"start_lr": 0}, "need 0 < start_lr < max_lr"),
    ({"start_lr": 1.0, "max_lr": 0.5}, "need 0 < start_lr < max_lr"),
    ({"mult": 1.0}, "mult must be > 1"),
    ({"max_iter": 0}, "max_iter must be a positive integer"),
    ({"explode": 1.0}, "explode must be > 1"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRFinder(**kwargs)


def test_an_exploded_last_loss_does_not_spoil_the_suggestion():
    # A clean descent, then one enormous loss where the finder stopped (as seen on Imagenette):
    # without cutting the tail, backward smoothing tilts the whole curve up and the "suggestion"
    # collapses to min/10 of the first lr.
    lrs = [1e-6 * 1.2 ** i for i in range(80)]
    losses = [2.3 - 0.8 / (1 + math.exp(-(i - 50) / 5)) for i in range(79)] + [2.7e6]
    s = suggest_lr(lrs, losses, method="valley")
    assert s.method == "valley" and 1e-3 < s.lr < 1e-1


def test_lr_find_prints_no_results_rows_and_saves_no_checkpoint(tmp_path):
    import io

    from groundup.callbacks.checkpoint import Checkpoint
    from groundup.callbacks.recorder import Recorder
    from groundup.callbacks.tracking import TrackResults
    from groundup.utils.checkpoint_file import read_checkpoint

    table = io.StringIO()
    track, recorder, ckpt = TrackResults(file=table), Recorder(), Checkpoint(tmp_path)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=[track, recorder, ckpt])
    learn.fit(1)
    printed, recorded = table.getvalue(), recorder.losses
    learn.lr_find(path=None)  # needs many epochs of Points' 6 batches: each would have printed a row
    assert table.getvalue() == printed and recorder.losses == recorded and len(learn.history) == 1
    assert read_checkpoint(tmp_path / "model.pt")["epoch"] == 0  # still the fit's checkpoint
    assert learn.cbs == [track, recorder, ckpt] and all(cb.learn is learn for cb in learn.cbs)
    learn.fit(2)  # and they are back at work: a header and two rows more
    assert len(table.getvalue().splitlines()) == 2 + 3 and len(learn.history) == 2


class CancelAtOnce(Callback):
    def before_epoch(self):
        raise CancelFitException


def test_lr_find_puts_the_float16_gradient_scaler_back_as_it_was():
    """Exploding losses under fp16 lower the scaler's scale; the real fit must not inherit that (issue 26, 5)."""
    from groundup.callbacks.mixed_precision import MixedPrecision

    amp = MixedPrecision(dtype=torch.float16, device_type="cpu")
    big_loss = lambda preds, yb: 1e3 * cross_entropy(preds, yb)  # noqa: E731 - its scaled gradient overflows fp16
    learn = Learner(groundup_mlp(), Points(), big_loss, cbs=[amp])
    learn.fit(1, cbs=[CancelAtOnce()])  # makes the scaler, at its initial scale
    before = amp.scaler.state_dict()
    assert before["scale"] == 65536.0
    scales = []

    class WatchTheScale(Callback):
        def after_batch(self):
            scales.append(learn.grad_scaler.get_scale())

    with learn.added_cbs([WatchTheScale()]):
        learn.lr_find(start_lr=1e-4, max_lr=1.0, max_iter=4, path=None)
    assert min(scales) < 65536.0  # the finder's inf gradients lowered the scale (to 32768 and below)
    assert amp.scaler.state_dict() == before  # and the next fit starts from where it was


def test_slide_is_the_default_and_lands_at_the_end_of_the_descent_as_fastais_rule():
    # fastai.callback.schedule.slide on fastai's curve (EMA 0.98, first 10 % and last 5 points dropped),
    # written out here: the reference the rule must equal.
    from groundup.utils.smoothing import EMA

    losses = noisy(CURVE, 0.02)
    avg = EMA(0.98)
    smooth = [avg.update(x) for x in losses]
    first = len(smooth) // 10
    curve, lrs = smooth[first:-5], LRS[first:-5]
    grad = np.gradient(curve)
    r, left, expected = -1, -16, lrs[-16]
    while left >= -len(curve) and abs(grad[r] - grad[left]) > 0.005:
        expected, r, left = lrs[left], r - 1, left - 1
    s = suggest_lr(LRS, losses, explode=None)
    assert s.method == "slide" and s.lr == pytest.approx(expected)
    assert s.lr > suggest_lr(LRS, losses, method="valley").lr  # a larger lr than valley's
    assert suggest_lr(LRS[:10], CURVE[:10]).method == "valley"  # too few points for slide: the next rule


# -- "rise" and the cap: the rule `--lr auto` uses with AdamW ---------------------------------------

def _first_rise(lrs, losses, rise=0.05):
    """The reference: twice the last lr before the loss, past its minimum, climbs `rise` above the minimum."""
    i_min = int(np.argmin(losses))
    limit = losses[i_min] * (1 + rise)
    above = [k for k in range(i_min + 1, len(losses)) if losses[k] > limit]
    return 2 * (lrs[above[0] - 1] if above else lrs[-1])


@pytest.mark.parametrize("curve", ["from scratch", "fine-tuning", "never rises"])
def test_rise_is_twice_the_last_lr_before_the_loss_climbs_5_percent_above_its_minimum(curve):
    if curve == "from scratch":  # a descent, a minimum, then the explosion
        losses = list(CURVE)
    elif curve == "fine-tuning":  # a trained model: flat (the lowest loss already), then rising
        losses = [1.0 + max(0.0, math.log10(lr) + 3) for lr in LRS]
    else:
        losses = [2.0 - k / 100 for k in range(len(LRS))]
    s = suggest_lr(LRS, losses, beta=0.0, method="rise", explode=None)
    assert s.method == "rise" and s.lr == _first_rise(LRS, losses) and s.cap is None
    if curve == "fine-tuning":  # the rise starts at 1e-3: 5 % higher at 10 ** -2.98
        assert 2e-3 <= s.lr < 2 * 10 ** -2.98
    if curve == "never rises":
        assert s.lr == 2 * LRS[-1]


def test_the_cap_bounds_any_method_and_says_whether_it_bound():
    found = suggest_lr(LRS, CURVE, beta=0.0, method="rise", explode=None)
    assert 0.01 < found.lr < 1  # this curve rises late: above 0.01
    kept = suggest_lr(LRS, CURVE, beta=0.0, method="rise", explode=None, cap=0.01)
    assert kept.lr == 0.01 and kept.cap == 0.01
    assert kept.describe() == "rise; held to the cap 0.01"
    low = suggest_lr(LRS, CURVE, beta=0.0, method="rise", explode=None, cap=1.0)
    assert low.lr == found.lr and low.describe() == "rise; below the cap 1"
    assert found.describe() == "rise"
    slide = suggest_lr(LRS, CURVE, explode=None)
    assert slide.describe() == "slide"
    held = suggest_lr(LRS, CURVE, explode=None, cap=slide.lr / 2)
    assert held.lr == slide.lr / 2 and held.describe() == f"slide; held to the cap {slide.lr / 2:g}"


@pytest.mark.parametrize("cap", [0, -1.0, math.inf, NAN])
def test_a_cap_that_is_not_a_positive_number_is_named(cap):
    with pytest.raises(ValueError, match=rf"cap must be a positive number .* got {cap!r}"):
        suggest_lr(LRS, CURVE, cap=cap)


def test_lr_find_takes_the_rule_and_marks_the_lr_it_returns(tmp_path):
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.05)
    s = learn.lr_find(method="rise", cap=1e-3, path=tmp_path / "lr.png")
    assert s.method == "rise" and s.lr <= 1e-3 and s.cap == 1e-3
    assert s == suggest_lr(s.lrs, s.losses, explode=4.0, method="rise", cap=1e-3)
    assert _marked(s.finder.plot(method="rise", cap=1e-3)) == [s.lr]
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG_SIGNATURE
