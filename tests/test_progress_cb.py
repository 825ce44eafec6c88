import io
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import Points

from groundup.callbacks.progress import ProgressCB
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


def test_bars_and_table_rows_do_not_garble_each_other():
    out = io.StringIO()
    track = TrackResults(file=out)
    make_learner(ProgressCB(enabled=True, file=out, min_interval=0), track).fit(2)
    text = out.getvalue()
    assert "epoch 1/2 train" in text and "epoch 2/2 valid" in text and "6/6 batch" in text
    assert re.search(r"loss \d\.\d{4}", text)
    # On screen: the table, untouched, then the epoch bar's final line; every batch bar was erased.
    lines = screen(text)
    assert lines[:3] == track.table().splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert lines[3].startswith("epochs: 100%|") and "2/2 epoch" in lines[3]
    assert lines[4:] == [""]


@pytest.mark.parametrize("kwargs", [{"enabled": None}, {"enabled": False}])
def test_quiet_when_not_a_terminal_or_disabled(kwargs):
    out = io.StringIO()  # not a terminal
    cb = ProgressCB(file=out, **kwargs)
    make_learner(cb).fit(1)
    assert out.getvalue() == "" and cb.batch_bar is None


def test_the_loss_is_read_only_when_the_bar_redraws(monkeypatch):
    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(1) or item(t))
    out = io.StringIO()
    make_learner(ProgressCB(enabled=True, file=out, min_interval=1e9)).fit(2)
    assert reads == [] and "loss" not in out.getvalue()  # never time to redraw: never a sync
    make_learner(ProgressCB(enabled=True, file=out, min_interval=0)).fit(1)
    assert len(reads) == 6  # a redraw after every training batch: one read each


def test_the_shown_loss_is_the_bias_corrected_moving_average():
    out, rec = io.StringIO(), Recorder(beta=0.9)
    make_learner(ProgressCB(enabled=True, file=out, min_interval=0, beta=0.9), rec).fit(1)
    shown = [float(v) for v in re.findall(r"loss (\d+\.\d+)", out.getvalue())]
    assert shown[-1] == pytest.approx(rec.smooth_losses[-1], abs=1e-4)


def test_a_cancelled_or_failed_fit_leaves_a_clean_line():
    class StopMidPass(Callback):
        def __init__(self, exc):
            self.exc = exc
        def after_batch(self):
            if self.learn.iter == 2:
                raise self.exc
    for exc in (CancelFitException(), RuntimeError("boom")):
        out = io.StringIO()
        cb = ProgressCB(enabled=True, file=out, min_interval=0)
        learn = make_learner(cb, StopMidPass(exc))
        if isinstance(exc, RuntimeError):
            with pytest.raises(RuntimeError):
                learn.fit(2)
        else:
            learn.fit(2)
        lines = screen(out.getvalue())
        assert lines[0].startswith("epochs:   0%|") and lines[1:] == [""] and cb.batch_bar is None


def test_bad_beta_is_named():
    with pytest.raises(ValueError, match="ProgressCB: beta must be in"):
        ProgressCB(beta=1.0)


def test_only_rank_0_draws_in_a_distributed_run(monkeypatch):
    import io

    import groundup.callbacks.progress as progress_mod

    monkeypatch.setattr(progress_mod, "is_main_process", lambda: False)
    out = io.StringIO()
    cb = progress_mod.ProgressCB(enabled=True, file=out)
    x = torch.randn(8, 2)
    y = (x[:, 0] > 0).long()

    dls = SimpleNamespace(train=[(x, y)], valid=[(x, y)])

    Learner(torch.nn.Linear(2, 2), dls, cross_entropy, lr=0.1, cbs=[cb]).fit(1)
    assert out.getvalue() == ""
