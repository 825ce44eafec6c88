"""StepLogger: steps.csv has a row per training batch, written in chunks, and survives a resume."""

import csv

import pytest
from conftest import Points, groundup_mlp

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.core import Callback
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.step_logger import StepLogger
from groundup.callbacks.tracking import TrackResults
from groundup.learner import Learner
from groundup.losses import cross_entropy


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def learner(*cbs):
    return Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=list(cbs))


def test_one_row_per_training_batch_with_its_lr_and_loss(tmp_path):
    rec = Recorder()
    learner(StepLogger(tmp_path / "steps.csv"), rec).fit(2, cbs=[OneCycle(0.1)])
    got = rows(tmp_path / "steps.csv")
    assert list(got[0]) == ["epoch", "iteration", "lr", "loss"]
    assert [int(r["epoch"]) for r in got] == [0] * 6 + [1] * 6  # Points: 6 training batches per epoch
    assert [int(r["iteration"]) for r in got] == list(range(12))
    assert [float(r["lr"]) for r in got] == pytest.approx(rec.lrs)
    assert [float(r["loss"]) for r in got] == pytest.approx(rec.losses)


def test_rows_are_written_in_chunks_not_per_batch(tmp_path):
    path = tmp_path / "steps.csv"
    seen = []

    class Peek(Callback):
        def after_batch(self):
            if self.learn.training:
                seen.append(len(rows(path)))

    learner(StepLogger(path, every=4), Peek()).fit(1)
    assert seen == [0, 0, 0, 4, 4, 4]  # the first chunk at 4 rows; the rest when the pass ends
    assert len(rows(path)) == 6


def test_a_resumed_fit_replaces_the_rows_of_the_epochs_it_runs(tmp_path):
    path = tmp_path / "steps.csv"
    learner(StepLogger(path), TrackResults(print_table=False), Checkpoint(tmp_path)).fit(3)
    resumed = learner(StepLogger(path), TrackResults(print_table=False))
    start = resumed.load(tmp_path / "model.pt")["epoch"] - 1  # redo the last epoch, as after a crash mid-epoch
    resumed.fit(3, start_epoch=start)
    got = rows(path)
    assert [int(r["iteration"]) for r in got] == list(range(18))  # no epoch twice
