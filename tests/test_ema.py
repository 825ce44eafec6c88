"""EMA: a moving average of the weights validates, is saved and ends the fit; training goes on from the weights."""

import csv
import json

import pytest
import torch
from conftest import one_line_error, tiny

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.core import Callback, CancelFitException
from groundup.callbacks.ema import EMA
from groundup.callbacks.tracking import TrackResults
from groundup.cli import main
from groundup.data.loader import DataLoaders
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.run.config import TrainConfig


def data(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def model():
    torch.manual_seed(0)  # with BatchNorm: its running statistics are averaged too
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def learner(*cbs):
    return Learner(model(), DataLoaders(data(), data(2, seed=1)), cross_entropy, lr=0.3,
                   opt_func=lambda p, lr: torch.optim.SGD(p, lr, momentum=0.9),
                   cbs=[TrackResults(print_table=False), *cbs], progress=False)


def floats(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items() if v.is_floating_point()}


class RecordSteps(Callback):
    order = 30  # after EMA's update: the weights it averaged

    def before_fit(self):
        self.start, self.steps = floats(self.learn.model), []

    def after_step(self):
        self.steps.append(floats(self.learn.model))


def test_the_average_is_the_formula_over_every_step_and_ends_the_fit():
    rec = RecordSteps()
    learn = learner(EMA(0.9), rec)
    learn.fit(3)
    avg = rec.start
    for t, w in enumerate(rec.steps, start=1):
        d = min(0.9, (1 + t) / (10 + t))
        avg = {k: d * avg[k] + (1 - d) * w[k] for k in avg}
    assert len(rec.steps) == 12
    got = floats(learn.model)
    for k in avg:  # parameters and BatchNorm's running mean and variance
        torch.testing.assert_close(got[k], avg[k], rtol=1e-5, atol=1e-6)
    assert not torch.equal(got["0.weight"], rec.steps[-1]["0.weight"])  # the average, not the last weights


def test_training_goes_on_from_the_trained_weights_and_validation_sees_the_average():
    plain, averaged = learner(), learner(ema := EMA(0.9))
    plain.fit(3)
    averaged.fit(3)
    # the training passes are the same: the average never trains
    assert [r["train_loss"] for r in averaged.history] == [r["train_loss"] for r in plain.history]
    for got, want in zip(ema.trained, [v for v in plain.model.state_dict().values() if v.is_floating_point()]):
        assert torch.equal(got, want)
    # the validation pass is the average's: the model after fit holds it
    assert averaged.history[-1]["valid_loss"] == pytest.approx(averaged.validate()["loss"])
    assert averaged.history[-1]["valid_loss"] != pytest.approx(plain.history[-1]["valid_loss"])


class StopAfter(Callback):
    order = 70  # after Checkpoint saved the epoch

    def __init__(self, epoch):
        self.epoch = epoch

    def after_epoch(self):
        if self.learn.epoch == self.epoch:
            raise CancelFitException


def test_a_resumed_fit_equals_the_uninterrupted_one_bit_for_bit(tmp_path):
    full = learner(EMA(0.9), Checkpoint(tmp_path / "full"))
    full.fit(4)
    cut = learner(EMA(0.9), Checkpoint(tmp_path / "cut"), StopAfter(1))
    cut.fit(4)
    resumed = learner(ema := EMA(0.9), Checkpoint(tmp_path / "cut"))
    start = resumed.load(tmp_path / "cut" / "model.pt")["epoch"] + 1
    assert start == 2 and ema.trained is None  # restored by the fit, not by load
    resumed.fit(4, start_epoch=start)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["valid_loss"] for r in resumed.history] == [r["valid_loss"] for r in full.history]


def test_a_checkpoint_holds_the_average_as_its_model_and_the_trained_weights_beside_it(tmp_path):
    learn = learner(ema := EMA(0.9), Checkpoint(tmp_path))
    learn.fit(2)
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    for k, v in floats(learn.model).items():
        assert torch.equal(saved["model"][k], v), k
    state = saved["callbacks"][ema.name]
    assert state["decay"] == 0.9 and state["steps"] == 8
    assert all(torch.equal(a, b) for a, b in zip(state["trained"], ema.trained))


def test_resuming_with_another_decay_is_refused(tmp_path):
    learner(EMA(0.9), Checkpoint(tmp_path)).fit(1)
    with pytest.raises(ValueError, match="made with decay 0.9, this callback has 0.99"):
        learner(EMA(0.99)).load(tmp_path / "model.pt")


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, float("nan"), "0.9"])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValueError, match="EMA: decay must be a finite number in"):
        EMA(decay)


def test_the_run_config_takes_ema_in_0_1_and_0_means_none():
    assert TrainConfig().ema == 0
    with pytest.raises(ValueError, match="--ema must be a finite number in"):
        TrainConfig(ema=1.0)


def test_groundup_train_ema_validates_and_saves_the_average(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", out, "--opt", "sgd", "--lr", "0.1", "--ema", "0.9")) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["ema"] == 0.9
    last = list(csv.DictReader((out / "metrics.csv").open()))[-1]
    assert main(["evaluate", str(out / "model.pt"), "--out", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "summary.json").read_text())["metrics"]
    assert float(last["valid_loss"]) == pytest.approx(evaluated["loss"], rel=1e-5)
    assert main(tiny(image_folder, "--out", tmp_path / "bad", "--ema", "1")) == 2
    one_line_error(capsys, r"--ema must be a finite number in \[0, 1\), got 1.0")
