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


# -- Learner(metrics=[...]) ------------------------------------------------------------------------------

def mean_prob(preds, targets):
    """The mean probability the model gives the true class (a per-item mean: exact when batch-weighted)."""
    return preds.softmax(1).gather(1, targets[:, None]).mean()


def uneven_points():
    dls = Points(n=256, bs=32)
    x, y = torch.cat([xb for xb, _ in dls.valid]), torch.cat([yb for _, yb in dls.valid])
    dls.valid = [(x[:50], y[:50]), (x[50:], y[50:])]  # 50 + 14: an unweighted mean of batches would differ
    return dls, x, y


def test_learner_metrics_are_validation_columns_of_the_table_and_the_history(capsys):
    from groundup.metrics import accuracy

    dls, x, y = uneven_points()
    learn = Learner(groundup_mlp(), dls, cross_entropy, lr=0.1, cbs=[TrackResults()], metrics=[accuracy, mean_prob])
    learn.fit(2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "mean_prob", "seconds"]
    assert len(lines) == 3 and len(lines[2].split()) == 6
    with torch.no_grad():
        preds = learn.model(x)
    row = learn.history[-1]
    assert row["accuracy"] == pytest.approx((preds.argmax(1) == y).float().mean().item(), rel=1e-6)
    assert row["mean_prob"] == pytest.approx(preds.softmax(1)[torch.arange(len(y)), y].mean().item(), rel=1e-5)
    assert "train_acc" not in row and "valid_acc" not in row  # the metrics given replace the default accuracy
    assert lines[2].split()[3] == f"{row['accuracy']:.4f}"


def test_learner_metrics_take_multi_label_metrics():
    from groundup.losses import binary_cross_entropy_with_logits
    from groundup.metrics import accuracy_multi

    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 2, generator=g)
    y = torch.stack([x[:, 0] > 0, x[:, 1] > 0, x.sum(1) > 0], 1).float()  # 3 tags, multi-hot (96, 3)

    dls = Points()
    dls.train = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    dls.valid = [(x[64:84], y[64:84]), (x[84:], y[84:])]  # 20 + 12
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    learn = Learner(model, dls, binary_cross_entropy_with_logits, lr=0.1,
                    cbs=[TrackResults(print_table=False)], metrics=[accuracy_multi])
    learn.fit(1)
    with torch.no_grad():
        preds = model(x[64:])
    expected = ((preds.sigmoid() > 0.5) == (y[64:] > 0.5)).float().mean().item()
    assert learn.history[0]["accuracy_multi"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("metrics, match", [
    ([3], r"Learner: metrics must be functions f\(preds, targets\) -> tensor; got 3 \(int\)"),
    ("accuracy", r"Learner: metrics must be functions .*; got 'accuracy' \(str\)"),
])
def test_learner_metrics_that_are_not_functions_are_named(metrics, match):
    with pytest.raises(TypeError, match=match):
        Learner(groundup_mlp(), Points(), cross_entropy, metrics=metrics)


def test_learner_metrics_need_names_of_their_own():
    from groundup.metrics import accuracy

    with pytest.raises(ValueError, match=r"two metrics are named 'accuracy'"):
        Learner(groundup_mlp(), Points(), cross_entropy, metrics=[accuracy, accuracy])
    def valid_loss(preds, targets):
        return preds.mean()
    with pytest.raises(ValueError, match=r"metric 'valid_loss' has the name of a column of the table"):
        Learner(groundup_mlp(), Points(), cross_entropy, metrics=[valid_loss])
