import math
from functools import partial

import pytest
import torch
from conftest import PNG_SIGNATURE, Points, groundup_mlp, torch_mlp

from groundup.callbacks.schedules import (
    OneCycle,
    combine_scheds,
    one_cycle_lrs,
    one_cycle_sched,
    plot_schedule,
    sched_cos,
    sched_lin,
)
from groundup.learner import Callback, CancelFitException, Learner
from groundup.losses import cross_entropy
from groundup.optim import SGD, Adam


class HyperProbe(Callback):
    """Records the first group's lr and momentum (or beta1) that each optimizer step used."""
    order = 100
    def __init__(self):
        self.lrs, self.moms, self.beta2s = [], [], []
    def after_step(self):
        g = self.learn.opt.param_groups[0]
        self.lrs.append(g["lr"])
        self.moms.append(g["betas"][0] if "betas" in g else g.get("momentum"))
        self.beta2s.append(g["betas"][1] if "betas" in g else None)


# -- schedule functions ----------------------------------------------------------------------------

@pytest.mark.parametrize("sched, pct, expected", [
    (sched_lin(1.0, 3.0), 0.0, 1.0),
    (sched_lin(1.0, 3.0), 0.5, 2.0),
    (sched_lin(1.0, 3.0), 1.0, 3.0),
    (sched_lin(2.0, 0.0), 0.25, 1.5),
    (sched_cos(1.0, 3.0), 0.0, 1.0),
    (sched_cos(1.0, 3.0), 0.5, 2.0),
    (sched_cos(1.0, 3.0), 1.0, 3.0),
    (sched_cos(0.0, 1.0), 0.25, (1 - math.cos(math.pi / 4)) / 2),
    (combine_scheds([0.25, 0.75], [sched_lin(0.1, 1.0), sched_lin(1.0, 0.0)]), 0.125, 0.55),
    (combine_scheds([0.25, 0.75], [sched_lin(0.1, 1.0), sched_lin(1.0, 0.0)]), 0.25, 1.0),
    (combine_scheds([0.25, 0.75], [sched_lin(0.1, 1.0), sched_lin(1.0, 0.0)]), 1.0, 0.0),
    (combine_scheds([0.0, 1.0], [sched_lin(5.0, 5.0), sched_lin(1.0, 0.0)]), 0.0, 1.0),  # empty stretch skipped
    (combine_scheds([0.5, 0.5], [sched_cos(0.0, 1.0), sched_cos(1.0, 0.0)]), 0.25, 0.5),
])
def test_schedule_functions(sched, pct, expected):
    assert sched(pct) == pytest.approx(expected)


LR = 0.1
COS_END = LR / 1e4


@pytest.mark.parametrize("anneal, pct, expected", [
    ("linear", 0.0, LR / 10),          # start at lr_max / div
    ("linear", 0.125, (LR / 10 + LR) / 2),
    ("linear", 0.25, LR),              # the peak at pct_start
    ("linear", 0.5, LR * 2 / 3),       # a third of the way down to 0
    ("linear", 1.0, 0.0),              # the walkthrough ends at 0
    ("cos", 0.0, LR / 10),
    ("cos", 0.125, (LR / 10 + LR) / 2),  # half-way in pct is half-way in value for a half cosine
    ("cos", 0.25, LR),
    ("cos", 0.5, LR - (1 - math.cos(math.pi / 3)) / 2 * (LR - COS_END)),
    ("cos", 1.0, COS_END),             # cos ends at lr_max / 1e4 by default
])
def test_one_cycle_lr_at_key_points(anneal, pct, expected):
    assert one_cycle_sched(LR, anneal=anneal)(pct) == pytest.approx(expected)


@pytest.mark.parametrize("anneal", ["linear", "cos"])
def test_div_final_sets_the_end(anneal):
    assert one_cycle_sched(1.0, div_final=100, anneal=anneal)(1.0) == pytest.approx(0.01)


def test_one_cycle_lrs_example():
    assert one_cycle_lrs(1.0, 4) == pytest.approx([0.1, 1.0, 2 / 3, 1 / 3])


def walkthrough_lr(lr_max, epoch, it, n_epochs, n_iter, pct_start=0.25, div=10):
    """The walkthrough's OneCycle arithmetic, written out independently as the oracle."""
    pct = (epoch * n_iter + it) / (n_epochs * n_iter)
    if pct < pct_start:
        t = pct / pct_start
        return (1 - t) * lr_max / div + t * lr_max
    t = (pct - pct_start) / (1 - pct_start)
    return (1 - t) * lr_max


def test_one_cycle_callback_reproduces_the_walkthrough_numbers():
    probe, cb = HyperProbe(), OneCycle(0.2)
    Learner(groundup_mlp(), Points(), cross_entropy, cbs=[cb, probe]).fit(3)
    expected = [walkthrough_lr(0.2, e, i, 3, 6) for e in range(3) for i in range(6)]
    assert cb.lrs == pytest.approx(expected) and probe.lrs == pytest.approx(expected)
    assert cb.moms == [] and set(probe.moms) == {0.0}  # plain SGD (momentum 0) is left alone


@pytest.mark.parametrize("model_fn, opt_func", [
    (groundup_mlp, partial(SGD, momentum=0.9)),
    (torch_mlp, partial(torch.optim.SGD, momentum=0.9)),
    (groundup_mlp, Adam),
    (torch_mlp, torch.optim.Adam),
    (torch_mlp, torch.optim.AdamW),
])
def test_momentum_cycles_opposite_to_the_lr(model_fn, opt_func):
    probe, cb = HyperProbe(), OneCycle(0.05, moms=(0.95, 0.85, 0.95))
    learn = Learner(model_fn(), Points(), cross_entropy, lr=0.01, cbs=[cb, probe], opt_func=opt_func)
    beta2 = learn.opt_func(list(learn.model.parameters()), 0.01).param_groups[0].get("betas", (0, None))[1]
    learn.fit(2)
    pcts = [i / 12 for i in range(12)]  # 2 epochs of 6 batches
    mom = [0.95 - 0.10 * p / 0.25 if p < 0.25 else 0.85 + 0.10 * (p - 0.25) / 0.75 for p in pcts]
    assert probe.moms == pytest.approx(mom) and cb.moms == pytest.approx(mom)
    assert probe.moms[0] == pytest.approx(0.95) and probe.moms[3] == pytest.approx(0.85)  # pct 0.25
    assert probe.beta2s == [beta2] * 12  # Adam's beta2 is untouched


@pytest.mark.parametrize("model_fn, opt_func, key, own", [
    (torch_mlp, partial(torch.optim.SGD, momentum=0.9), "momentum", 0.9),
    (groundup_mlp, partial(SGD, momentum=0.8), "momentum", 0.8),
    (torch_mlp, partial(torch.optim.AdamW, betas=(0.7, 0.99)), "betas", (0.7, 0.99)),
])
def test_the_users_own_momentum_is_back_after_fit(model_fn, opt_func, key, own):
    learn = Learner(model_fn(), Points(), cross_entropy, lr=0.01, opt_func=opt_func)
    learn.fit_one_cycle(1, 0.05)
    assert learn.opt.param_groups[0][key] == own  # cycled in the fit (0.95 -> 0.85 -> 0.95), then restored
    probe = HyperProbe()
    learn.fit(1, cbs=[probe])  # a later plain fit trains with it
    assert set(probe.moms) == {own if key == "momentum" else own[0]}


def test_moms_none_leaves_momentum_alone():
    probe = HyperProbe()
    Learner(torch_mlp(), Points(), cross_entropy, cbs=[OneCycle(0.1, moms=None), probe],
            opt_func=partial(torch.optim.SGD, momentum=0.9)).fit(1)
    assert set(probe.moms) == {0.9}


@pytest.mark.parametrize("anneal", ["linear", "cos"])
def test_resuming_with_start_epoch_continues_the_schedule_exactly(anneal):
    opt_func = partial(SGD, momentum=0.9)
    full = OneCycle(0.1, anneal=anneal)
    learn_full = Learner(groundup_mlp(), Points(), cross_entropy, cbs=[full], opt_func=opt_func)
    learn_full.fit(4)

    class StopAfterEpoch1(Callback):
        def after_epoch(self):
            if self.learn.epoch == 1:
                raise CancelFitException
    first, second = OneCycle(0.1, anneal=anneal), OneCycle(0.1, anneal=anneal)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, opt_func=opt_func, cbs=[StopAfterEpoch1()])
    learn.fit(4, cbs=[first])
    learn.fit(4, cbs=[second], start_epoch=2)
    assert first.lrs + second.lrs == full.lrs and first.moms + second.moms == full.moms
    for a, b in zip(learn.model.parameters(), learn_full.model.parameters()):
        assert torch.equal(a, b)


def test_fit_one_cycle_sets_the_lrs():
    probe = HyperProbe()
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.3, cbs=[probe])
    learn.fit_one_cycle(2, 0.05, anneal="cos")
    assert probe.lrs == pytest.approx(one_cycle_lrs(0.05, 12, anneal="cos"))
    learn.fit_one_cycle(1)  # max_lr defaults to learn.lr
    assert probe.lrs[12:] == pytest.approx(one_cycle_lrs(0.3, 6))


def test_schedule_is_set_in_training_only():
    seen = []
    class ValidProbe(Callback):
        order = 100
        def before_batch(self):
            if not self.learn.training:
                seen.append(self.learn.opt.param_groups[0]["lr"])
    cb = OneCycle(0.1)
    Learner(groundup_mlp(), Points(), cross_entropy, cbs=[cb, ValidProbe()]).fit(1)
    assert len(cb.lrs) == 6 and seen == [cb.lrs[-1]] * 2  # validation keeps the last training lr


def test_schedule_plots_return_figures_and_write_files_only_when_given_a_path(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    cb = OneCycle(0.1)
    Learner(torch_mlp(), Points(), cross_entropy, cbs=[cb], opt_func=partial(torch.optim.SGD, momentum=0.9)).fit(1)
    fig = cb.plot()
    assert isinstance(fig, Figure) and list(fig.axes[0].lines[0].get_ydata()) == cb.lrs
    sched = one_cycle_sched(0.1, anneal="cos")
    fig = plot_schedule(sched, n=5)
    assert isinstance(fig, Figure)
    assert list(fig.axes[0].lines[0].get_ydata()) == [sched(p) for p in (0, 0.25, 0.5, 0.75, 1)]
    assert list(tmp_path.iterdir()) == []  # no path, no file


def test_plots_write_pngs(tmp_path):
    cb = OneCycle(0.1)
    Learner(torch_mlp(), Points(), cross_entropy, cbs=[cb], opt_func=partial(torch.optim.SGD, momentum=0.9)).fit(1)
    cb.plot(tmp_path / "one_cycle.png")
    plot_schedule(one_cycle_sched(0.1, anneal="cos"), tmp_path / "sched.png", n=50)
    for name in ("one_cycle.png", "sched.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="nothing to plot yet"):
        OneCycle(0.1).plot(tmp_path / "empty.png")


@pytest.mark.parametrize("kwargs, match", [
    ({"max_lr": -1.0}, "max_lr must be a finite number > 0, got -1.0"),
    ({"max_lr": 0.1, "pct_start": 1.0}, r"pct_start \(the warm-up fraction\) must be in \[0, 1\), got 1.0"),
    ({"max_lr": 0.1, "div": 0}, "div must be > 0"),
    ({"max_lr": 0.1, "div_final": 0}, "div_final must be > 0 or None"),
    ({"max_lr": 0.1, "anneal": "exp"}, r"anneal must be one of \('linear', 'cos'\), got 'exp'"),
    ({"max_lr": 0.1, "moms": (0.95, 0.85)}, "moms must be three momentums"),
])
def test_bad_one_cycle_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OneCycle(**kwargs)


@pytest.mark.parametrize("pcts, n_scheds, match", [
    ([0.5, 0.6], 2, "must be >= 0 and sum to 1"),
    ([1.0], 2, "one pct per schedule, got 1 pcts and 2 schedules"),
])
def test_bad_combine_scheds_arguments_are_named(pcts, n_scheds, match):
    with pytest.raises(ValueError, match=match):
        combine_scheds(pcts, [sched_lin(0, 1)] * n_scheds)


def test_a_loader_without_len_is_a_clear_error():
    class NoLen:
        def __iter__(self):
            return iter(Points().train)
    class Dls:
        train, valid = NoLen(), Points().valid
    with pytest.raises(ValueError, match="OneCycle needs the number of batches per epoch"):
        Learner(groundup_mlp(), Dls(), cross_entropy, cbs=[OneCycle(0.1)]).fit(1)
