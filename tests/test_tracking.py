import pytest
import torch
from conftest import Points, groundup_mlp

from groundup.callbacks.core import Callback, CancelFitException
from groundup.callbacks.tracking import COLUMNS, TrackResults
from groundup.learner import Learner
from groundup.losses import cross_entropy


def test_track_results_weights_by_batch_size_and_matches_a_direct_computation():
    dls = Points(n=80, bs=32)  # validation: 20 samples in one batch; training 60: 32 + 28
    track = TrackResults(print_table=False)
    learn = Learner(groundup_mlp(), dls, cross_entropy, lr=0.1, cbs=[track])
    learn.fit(1)
    xs, ys = zip(*dls.valid)
    x, y = torch.cat(xs), torch.cat(ys)
    with torch.no_grad():
        preds = learn.model(x)
    assert track.history[0]["valid_loss"] == pytest.approx(cross_entropy(preds, y).item(), rel=1e-5)
    assert track.history[0]["valid_acc"] == pytest.approx((preds.argmax(1) == y).float().mean().item())


def test_track_results_prints_a_table(capsys):
    Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[TrackResults()]).fit(2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(COLUMNS) and len(lines) == 3
    assert lines[2].split()[0] == "1"


def test_track_results_fills_the_learners_history_and_a_resumed_fit_appends():
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[TrackResults(print_table=False)])
    learn.fit(3, cbs=[_StopAfter(0)])
    assert [r["epoch"] for r in learn.history] == [0]
    learn.fit(3, start_epoch=1)
    assert [r["epoch"] for r in learn.history] == [0, 1, 2]
    learn.fit(1)  # a fresh fit starts a fresh history
    assert [r["epoch"] for r in learn.history] == [0]


class _StopAfter(Callback):
    order = 100
    def __init__(self, epoch):
        self.stop = epoch
    def after_epoch(self):
        if self.learn.epoch == self.stop:
            raise CancelFitException
