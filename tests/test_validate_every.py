"""ValidateEvery: validation only every n-th epoch and the last; the skipped epochs record nothing of it."""

import csv
import io
import json

import pytest
import torch
from conftest import one_line_error, tiny

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.core import Callback
from groundup.callbacks.early_stopping import EarlyStopping
from groundup.callbacks.progress import ProgressBar
from groundup.callbacks.tracking import TrackResults
from groundup.callbacks.validate_every import ValidateEvery
from groundup.cli import main
from groundup.data.loader import DataLoaders
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn import Linear


@pytest.mark.parametrize("n, n_epochs, validated", [
    (3, 8, [2, 5, 7]),          # every third, and the last
    (2, 4, [1, 3]),
    (1, 3, [0, 1, 2]),          # 1: every epoch
    (5, 3, [2]),                # more than the epochs: the last alone
])
def test_which_epochs_are_validated(n, n_epochs, validated):
    cb = ValidateEvery(n)
    assert [e for e in range(n_epochs) if cb.validates(e, n_epochs)] == validated


def data(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


class CountValidBatches(Callback):
    def before_fit(self):
        self.seen = []

    def after_batch(self):
        if not self.learn.training:
            self.seen.append(self.learn.epoch)


def test_skipped_epochs_run_no_validation_batch_and_their_rows_have_no_validation_columns(capsys):
    torch.manual_seed(0)
    counter = CountValidBatches()
    learn = Learner(Linear(4, 3), DataLoaders(data(), data(2, seed=1)), cross_entropy, lr=0.1,
                    cbs=[ValidateEvery(2), TrackResults(), counter, ProgressBar(enabled=True, file=io.StringIO())], progress=False)
    learn.fit(5)
    assert sorted(set(counter.seen)) == [1, 3, 4] and len(counter.seen) == 3 * 2
    for row in learn.history:
        validated = row["epoch"] in (1, 3, 4)
        assert ("valid_loss" in row) == validated and ("valid_acc" in row) == validated, row
        assert "train_loss" in row and "train_acc" in row
    # the validated rows are the validation's, not the training pass's numbers left over
    check = Learner(learn.model, learn.dls, cross_entropy, progress=False).validate()
    assert learn.history[-1]["valid_loss"] == pytest.approx(check["loss"], rel=1e-6)
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[3:5] == ["-", "-"]  # epoch 0: no validation


def test_patience_counts_validated_epochs_only():
    rows = [{"epoch": 0, "train_loss": 1.0, "valid_loss": 1.0}, {"epoch": 1, "train_loss": 0.9},
            {"epoch": 2, "train_loss": 0.8}, {"epoch": 3, "train_loss": 0.7, "valid_loss": 1.1},
            {"epoch": 4, "train_loss": 0.6}, {"epoch": 5, "train_loss": 0.5, "valid_loss": 1.2}]
    assert EarlyStopping("valid_loss", patience=2).stop_epoch(rows) == 5
    assert EarlyStopping("valid_loss", patience=3).stop_epoch(rows) is None
    assert EarlyStopping("train_loss", patience=1).stop_epoch(rows) is None  # training rows are all there


def test_best_checkpoint_is_a_validated_epoch(tmp_path):
    torch.manual_seed(0)
    learn = Learner(Linear(4, 3), DataLoaders(data(), data(2, seed=1)), cross_entropy, lr=0.1,
                    cbs=[ValidateEvery(3), TrackResults(print_table=False),
                         ck := Checkpoint(tmp_path, best_by="valid_loss")], progress=False)
    learn.fit(4)
    assert ck.best_epoch in (2, 3)


def test_bad_n_names_itself():
    with pytest.raises(ValueError, match="ValidateEvery: n must be a positive integer, got 0"):
        ValidateEvery(0)


def test_the_cli_validates_every_nth_epoch_and_the_last(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main([*tiny(image_folder, "--valid-every", "2", epochs=3), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [bool(r["valid_acc"]) for r in rows] == [False, True, True]
    assert "valid_every = 2" in (out / "config.toml").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["valid_acc"] == pytest.approx(float(rows[-1]["valid_acc"]))
    assert summary["best"]["epoch"] in (1, 2)


def test_a_bad_valid_every_is_a_one_line_error(image_folder, tmp_path, capsys):
    assert main([*tiny(image_folder, "--valid-every", "0"), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, "--valid-every")
