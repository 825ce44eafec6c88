"""ProgressBar: tqdm bars drawn into a file, the smoothed loss, clean table rows, rank 0 only."""

import io
import re
import time

import pytest
import torch
from conftest import Points

from groundup.callbacks.progress import ProgressBar
from groundup.callbacks.recorder import Recorder
from groundup.callbacks.tracking import COLUMNS, TrackResults
from groundup.learner import Callback, CancelFitException, Learner
from groundup.losses import cross_entropy
from groundup.nn.layers import Linear, ReLU, Sequential


def make_learner(*cbs):
    torch.manual_seed(0)
    return Learner(Sequential(Linear(2, 16), ReLU(), Linear(16, 2)), Points(), cross_entropy, lr=0.1, cbs=cbs)


def screen(text: str) -> list[str]:
    """What a terminal shows after printing `text`: '\\r' moves to column 0, later characters overwrite."""
    lines, line, col = [], [], 0
    for ch in text:
        if ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            line[col:col + 1] = [ch]
            col += 1
    lines.append("".join(line).rstrip())
    return lines


class Terminal(io.StringIO):
    """A StringIO that says it is a terminal."""
    def isatty(self):
        return True


def test_an_enabled_bar_draws_each_pass_and_the_epochs():
    out = io.StringIO()
    make_learner(ProgressBar(enabled=True, file=out, min_interval=0)).fit(2)
    text = out.getvalue()
    assert "epoch 0 train" in text and "epoch 1 valid" in text
    assert "6/6 [" in text and "2/2 [" in text  # Points: 6 training, 2 validation batches
    lines = screen(text)  # every batch bar was erased; the epoch bar's final line stays
    assert len(lines) == 2 and lines[0].startswith("epochs: 100%|") and lines[1] == ""


def test_the_smoothed_loss_is_shown_after_the_training_counters():
    out = io.StringIO()
    make_learner(ProgressBar(enabled=True, file=out, min_interval=0)).fit(1)
    train_draws = [d for d in out.getvalue().split("\r") if d.startswith("epoch 0 train") and "1/6" in d]
    assert re.search(r"batch/s, loss \d\.\d{4}\]", train_draws[0])
    assert not any("loss" in d for d in out.getvalue().split("\r") if d.startswith("epoch 0 valid"))


def test_quiet_when_disabled():
    out = io.StringIO()
    make_learner(ProgressBar(file=out, enabled=False)).fit(1)
    assert out.getvalue() == ""


class Clock:
    """A fake clock for the plain lines, `step` seconds later after every batch."""

    def __init__(self, monkeypatch, step):
        self.t, self.step = 1000.0, step
        monkeypatch.setattr("groundup.callbacks.progress._now", lambda: self.t)

    def callback(self):
        clock = self

        class Tick(Callback):
            order = 59  # before ProgressBar (60) looks at the time
            def after_batch(self):
                clock.t += clock.step
        return Tick()


def test_without_a_terminal_it_prints_one_plain_line_per_epoch(monkeypatch):
    clock = Clock(monkeypatch, step=0.5)
    out = io.StringIO()  # not a terminal
    make_learner(ProgressBar(file=out), clock.callback()).fit(2)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 2  # a short epoch: no lines while it runs
    assert re.fullmatch(r"epoch 0 done in 4\.0 s, 1 of 2 \(6 training batches, 1\.5 batch/s, train_loss \d\.\d{4}\)",
                        lines[0])
    assert lines[1].startswith("epoch 1 done in 4.0 s, 2 of 2")  # 6 training + 2 validation batches of 0.5 s


def test_a_long_epoch_gets_a_line_every_30_seconds_with_count_and_speed(monkeypatch):
    clock = Clock(monkeypatch, step=20.0)  # 6 training batches of 20 s: a 2-minute pass
    out = io.StringIO()
    make_learner(ProgressBar(file=out), clock.callback()).fit(1)
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch 0 train: batch 2/6", "epoch 0 train: batch 4/6",
                                                     "epoch 0 train: batch 6/6", "epoch 0 valid: batch 2/2",
                                                     "epoch 0 done in 2.7 min"]
    assert re.fullmatch(r"epoch 0 train: batch 2/6, 0\.05 batch/s, loss \d\.\d{4}, about 80\.0 s left", lines[0])


def test_draws_by_default_on_a_terminal():
    out = Terminal()
    make_learner(ProgressBar(file=out)).fit(1)
    assert "epochs: 100%|" in out.getvalue()


def test_bars_and_table_rows_do_not_garble_each_other():
    out = io.StringIO()
    track = TrackResults(file=out)
    make_learner(ProgressBar(enabled=True, file=out, min_interval=0), track).fit(2)
    # On screen: the table, untouched, then the epoch bar's final line; every batch bar was erased.
    # (A row printed after a bar fragment, or over a longer one, would show the fragment here.)
    lines = screen(out.getvalue())
    assert lines[:3] == track.table().splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert lines[3].startswith("epochs: 100%|") and "2/2 [" in lines[3]
    assert lines[4:] == [""]


def test_the_loss_is_read_only_when_the_bar_redraws(monkeypatch):
    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(1) or item(t))
    out = io.StringIO()
    make_learner(ProgressBar(enabled=True, file=out, min_interval=1e9)).fit(2)
    assert reads == [] and "loss" not in out.getvalue()  # never time to redraw: never a sync
    make_learner(ProgressBar(enabled=True, file=out, min_interval=0)).fit(1)
    assert len(reads) == 6  # a redraw after every training batch: one read each


def test_the_shown_loss_is_the_bias_corrected_moving_average():
    out, rec = io.StringIO(), Recorder(beta=0.9)
    make_learner(ProgressBar(enabled=True, file=out, min_interval=0, beta=0.9), rec).fit(1)
    shown = [float(v) for v in re.findall(r"loss (\d+\.\d+)", out.getvalue())]
    assert shown[-1] == pytest.approx(rec.smooth_losses[-1], abs=1e-4)


def test_redraws_several_batches_apart_show_the_exact_moving_average(monkeypatch):
    clock = iter(range(10**6))
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))  # one tick per call: per pass, then per batch
    out, rec = io.StringIO(), Recorder(beta=0.9)
    make_learner(ProgressBar(enabled=True, file=out, min_interval=2.5, beta=0.9), rec).fit(1)
    shown = [float(v) for v in re.findall(r"loss (\d+\.\d+)", out.getvalue())]
    # Pass starts at tick 0; batches at ticks 1..6; redraws at ticks >= 2.5 and >= 5.5: batches 3 and 6.
    assert shown == pytest.approx([rec.smooth_losses[2], rec.smooth_losses[5]], abs=1e-4)


class StopMidPass(Callback):
    def __init__(self, exc):
        self.exc = exc

    def after_batch(self):
        if self.learn.iter == 2:
            raise self.exc


@pytest.mark.parametrize("exc", [CancelFitException(), RuntimeError("boom")])
def test_a_cancelled_or_failed_fit_leaves_a_clean_line(exc):
    out = io.StringIO()
    learn = make_learner(ProgressBar(enabled=True, file=out, min_interval=0), StopMidPass(exc))
    if isinstance(exc, RuntimeError):
        with pytest.raises(RuntimeError):
            learn.fit(2)
    else:
        learn.fit(2)
    lines = screen(out.getvalue())
    assert lines[0].startswith("epochs:   0%|") and lines[1:] == [""]


def test_bad_beta_is_named():
    with pytest.raises(ValueError, match="ProgressBar: beta must be in"):
        ProgressBar(beta=1.0)


def test_only_rank_0_draws_in_a_distributed_run(monkeypatch):
    monkeypatch.setenv("RANK", "1")  # what torchrun sets for the second process
    out = io.StringIO()
    make_learner(ProgressBar(enabled=True, file=out, min_interval=0)).fit(1)
    assert out.getvalue() == ""


def test_the_plain_line_of_an_epoch_shows_its_mean_training_loss_the_tables_train_loss(monkeypatch):
    from groundup.callbacks.tracking import TrackResults

    clock = Clock(monkeypatch, step=0.5)
    out = io.StringIO()
    learn = make_learner(ProgressBar(file=out), clock.callback())
    learn.fit(2)  # without TrackResults: the mean of the epoch's batch losses
    alone = [float(line.rsplit(" ", 1)[1].rstrip(")")) for line in out.getvalue().splitlines()]
    out.seek(0), out.truncate()
    learn = make_learner(ProgressBar(file=out), clock.callback())
    learn.add_cb(TrackResults(print_table=False))
    learn.fit(2)
    shown = [float(line.rsplit(" ", 1)[1].rstrip(")")) for line in out.getvalue().splitlines()]
    assert shown == [round(row["train_loss"], 4) for row in learn.history]
    assert alone == pytest.approx(shown, abs=2e-3)  # Points' batches are near-equal in size


# -- the Learner's own bar: on by default, off with progress=False --------------------------------------------

def test_a_learner_shows_a_progress_bar_by_default_and_progress_false_turns_it_off(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "stderr", Terminal())
    learn = make_learner()
    learn.fit(1)
    assert "epochs: 100%|" in sys.stderr.getvalue()
    assert learn.cbs == []  # the bar joined that fit only
    monkeypatch.setattr(sys, "stderr", Terminal())
    torch.manual_seed(0)
    quiet = Learner(Sequential(Linear(2, 16), ReLU(), Linear(16, 2)), Points(), cross_entropy, progress=False)
    quiet.fit(1)
    assert sys.stderr.getvalue() == ""


def test_the_default_bar_is_not_added_next_to_one_given_and_piped_output_gets_plain_lines(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "stderr", Terminal())
    out = io.StringIO()
    make_learner(ProgressBar(enabled=True, file=out)).fit(1)
    assert sys.stderr.getvalue() == "" and "epochs: 100%|" in out.getvalue()  # one bar: the one given
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no terminal: a plain line per epoch
    make_learner().fit(2, cbs=[TrackResults(print_table=False)])
    lines = sys.stderr.getvalue().splitlines()
    assert [line.split(" done")[0] for line in lines] == ["epoch 0", "epoch 1"]


def test_progress_must_be_a_bool():
    with pytest.raises(TypeError, match="Learner: progress must be True or False .* got 'no'"):
        Learner(Sequential(Linear(2, 2)), Points(), cross_entropy, progress="no")
