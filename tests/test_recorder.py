import pytest
import torch
from conftest import PNG_SIGNATURE, Points

from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.learner import Callback, CancelFitException, Learner
from groundup.losses import cross_entropy
from groundup.nn.layers import Linear, ReLU, Sequential


def make_learner(*cbs):
    torch.manual_seed(0)
    return Learner(Sequential(Linear(2, 16), ReLU(), Linear(16, 2)), Points(), cross_entropy, lr=0.1, cbs=cbs)


class LossProbe(Callback):
    """Reads each training batch's loss directly (a sync per batch: fine in a test)."""
    order = 100
    def __init__(self):
        self.losses = []
    def after_loss(self):
        if self.learn.training:
            self.losses.append(self.learn.loss.item())


def expected_smooth(losses, beta):
    avg, out = 0.0, []
    for i, loss in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** i))
    return out


def test_records_every_training_batch_lr_and_loss():
    rec, probe, sched = Recorder(), LossProbe(), OneCycle(0.2)
    make_learner(rec, probe, sched).fit(2)
    assert len(rec.losses) == 12 and rec.iters == list(range(12))  # 6 training batches × 2 epochs
    assert rec.losses == pytest.approx(probe.losses, rel=1e-6)
    assert rec.lrs == pytest.approx(sched.lrs)  # the lr each step used, as the schedule set it


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.98])
def test_smoothed_loss_is_an_exponential_average_with_bias_correction(beta):
    rec = Recorder(beta=beta)
    make_learner(rec).fit(2)
    assert rec.smooth_losses == pytest.approx(expected_smooth(rec.losses, beta))
    assert rec.smooth_losses[0] == pytest.approx(rec.losses[0])  # no pull towards 0 at the start


def test_no_host_sync_per_batch(monkeypatch):
    calls = []
    def counting(name, original):
        def method(t, *args, **kwargs):
            if t.is_floating_point():  # loss values, not the loss function's target checks
                calls.append(name)
            return original(t, *args, **kwargs)
        return method
    for name in ("item", "tolist", "cpu", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    rec = Recorder()
    learn = make_learner(rec)
    learn.progress = False  # the recorder's conversions alone (the bar's plain lines read one loss per epoch)
    learn.fit(3)
    assert calls == ["tolist"] * 3  # one conversion per epoch (in after_train), none per batch
    monkeypatch.undo()
    assert len(rec.losses) == 18


def test_plots_write_pngs(tmp_path):
    rec = Recorder()
    make_learner(rec).fit(1)
    rec.plot_loss(tmp_path / "loss.png", skip_start=1)
    rec.plot_lr(tmp_path / "plots" / "lr.png")
    for name in ("loss.png", "plots/lr.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


def test_plotting_an_empty_record_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match=r"no losses recorded .*run learn.fit"):
        Recorder().plot_loss(tmp_path / "loss.png")
    with pytest.raises(ValueError, match="no learning rates recorded"):
        Recorder().plot_lr(tmp_path / "lr.png")


def test_state_dict_round_trip_and_a_resumed_fit_appends():
    full = Recorder()
    make_learner(full).fit(3)

    first = Recorder()
    learn = make_learner(first)
    learn.fit(3, cbs=[StopAfterEpoch(1)])
    state = first.state_dict()
    assert len(state["losses"]) == 12

    resumed = Recorder()
    resumed.load_state_dict(state)
    learn.remove_cb(first)
    learn.add_cb(resumed)
    learn.fit(3, start_epoch=2)
    assert resumed.losses == pytest.approx(full.losses)
    assert resumed.smooth_losses == pytest.approx(full.smooth_losses)
    assert resumed.lrs == full.lrs

    learn.fit(1)  # a fresh fit from epoch 0 starts a new record
    assert len(resumed.losses) == 6


class StopAfterEpoch(Callback):
    def __init__(self, epoch):
        self.stop_epoch = epoch
    def after_epoch(self):
        if self.learn.epoch == self.stop_epoch:
            raise CancelFitException


def test_bad_beta_is_named():
    with pytest.raises(ValueError, match=r"Recorder: beta must be in \[0, 1\), got 1"):
        Recorder(beta=1)


def test_plot_loss_and_plot_lr_return_figures_and_write_only_when_given_a_path(tmp_path, monkeypatch):
    from conftest import Points, groundup_mlp
    from matplotlib.figure import Figure

    from groundup.learner import Learner
    from groundup.losses import cross_entropy

    monkeypatch.chdir(tmp_path)
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, lr=0.1, cbs=[rec := Recorder()])
    learn.fit(1)
    assert isinstance(rec.plot_loss(), Figure) and isinstance(rec.plot_lr(), Figure)
    learn.lr_find(max_iter=5)  # no lr_find.png in the current folder
    assert list(tmp_path.iterdir()) == []
    rec.plot_loss(tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
