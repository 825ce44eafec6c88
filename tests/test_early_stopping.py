"""EarlyStopping: stop when the monitored metric has not improved for `patience` epochs."""

import math

import pytest
from conftest import Points, groundup_mlp

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.core import Callback
from groundup.callbacks.early_stopping import EarlyStopping
from groundup.learner import Learner
from groundup.losses import cross_entropy

NAN = math.nan


class Scripted(Callback):
    """Writes a scripted history row per epoch, as TrackResults would."""
    order = 50

    def __init__(self, column, values):
        self.column, self.values = column, values

    def after_epoch(self):
        self.learn.history.append({"epoch": self.learn.epoch, self.column: self.values[self.learn.epoch]})


def fit(column, values, **kwargs):
    stop = EarlyStopping(column, **kwargs)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=[Scripted(column, values), stop])
    learn.fit(len(values))
    return stop, [r["epoch"] for r in learn.history]


@pytest.mark.parametrize("column, values, patience, min_delta, stopped, best_epoch", [
    ("valid_loss", [3, 2, 1, 0.5, 0.4], 1, 0, None, 4),            # always improving: runs to the end
    ("valid_loss", [3, 2, 2.5, 2.1, 1.0, 0.9], 2, 0, 3, 1),         # two epochs after epoch 1 without a better loss
    ("valid_loss", [3, 2, 2, 2, 2], 1, 0, 2, 1),                    # equal is not better
    ("valid_loss", [3, 2.95, 2.9, 2.85, 2.8], 2, 0.1, 2, 0),        # steps smaller than min_delta do not count
    ("valid_acc", [0.2, 0.5, 0.4, 0.5, 0.6], 2, 0, 3, 1),           # accuracy: higher is better
    ("valid_loss", [NAN, NAN, 1.0, NAN], 2, 0, 1, None),            # NaN never improves
    ("valid_loss", [2, NAN, 1.5, NAN, NAN], 2, 0, 4, 2),
])
def test_stops_when_the_metric_has_not_improved_for_patience_epochs(column, values, patience, min_delta, stopped,
                                                                    best_epoch):
    stop, epochs = fit(column, values, patience=patience, min_delta=min_delta)
    assert stop.stopped_epoch == stopped and stop.best_epoch == best_epoch
    assert epochs == list(range(len(values) if stopped is None else stopped + 1))


def test_a_resumed_fit_goes_on_counting_from_the_history(tmp_path):
    values = [3, 2, 2.5, 2.6, 2.7, 2.8]
    stop = EarlyStopping("valid_loss", patience=3)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1,
                    cbs=[Scripted("valid_loss", values), stop, Checkpoint(tmp_path, best_by="valid_loss")])
    learn.fit(3)  # epochs 0-2: one epoch without an improvement so far
    assert (stop.best, stop.best_epoch, stop.wait) == (2.0, 1, 1)
    again = EarlyStopping("valid_loss", patience=3)
    learn2 = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=[Scripted("valid_loss", values), again])
    start = learn2.load(tmp_path / "model.pt")["epoch"] + 1
    learn2.fit(len(values), start_epoch=start)
    assert again.stopped_epoch == 4 and [r["epoch"] for r in learn2.history] == [0, 1, 2, 3, 4]


def test_early_stopping_keeps_best_pt_at_the_best_epoch(tmp_path):
    values = [3, 1, 2, 2.5, 9]
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1,
                    cbs=[Scripted("valid_loss", values), EarlyStopping(patience=2),
                         Checkpoint(tmp_path, best_by="valid_loss")])
    learn.fit(len(values))
    from groundup.utils.checkpoint_file import read_checkpoint

    assert read_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert read_checkpoint(tmp_path / "model.pt")["epoch"] == 3  # the stopped epoch was saved too


@pytest.mark.parametrize("kwargs, pattern", [
    ({"monitor": "val_loss"}, r"monitor must be one of train_loss, train_acc, valid_loss, valid_acc, got 'val_loss'"),
    ({"patience": 0}, r"EarlyStopping: patience must be a positive integer, got 0"),
])
def test_bad_arguments_say_what_is_wanted(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        EarlyStopping(**kwargs)


def test_without_a_history_row_it_says_to_add_track_results():
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=[EarlyStopping()])
    with pytest.raises(ValueError, match=r"add TrackResults\(\)"):
        learn.fit(1)


def test_stop_epoch_tells_where_saved_results_stopped():
    stop = EarlyStopping("valid_acc", patience=2)
    rows = [{"epoch": i, "valid_acc": v} for i, v in enumerate([0.1, 0.3, 0.2, 0.25, 0.4])]
    assert stop.stop_epoch(rows) == 3 and stop.stop_epoch(rows[:3]) is None
