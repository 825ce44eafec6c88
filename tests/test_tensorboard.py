"""TensorBoardLogger: read the event file back; without the tensorboard package, say how to install it."""

import sys

import pytest
from conftest import Points, groundup_mlp

from groundup.callbacks.recorder import Recorder
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.tracking import TrackResults
from groundup.learner import Learner
from groundup.losses import cross_entropy


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return acc


def test_scalars_per_batch_and_per_epoch_and_the_hyper_parameters(tmp_path):
    pytest.importorskip("tensorboard")
    from groundup.callbacks.tensorboard import TensorBoardLogger

    rec = Recorder()
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1,
                    cbs=[TrackResults(print_table=False), rec,
                         TensorBoardLogger(tmp_path / "tb", hparams={"lr": 0.1, "opt": "sgd", "clip": None}, every=4)])
    learn.fit(2, cbs=[OneCycle(0.1)])
    acc = read_events(tmp_path / "tb")
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "epoch/train_loss", "epoch/valid_loss", "epoch/valid_acc"} <= scalars
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(12)) and [e.value for e in loss] == pytest.approx(rec.losses)
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx(rec.lrs)
    valid = acc.Scalars("epoch/valid_loss")
    assert [e.step for e in valid] == [0, 1]
    assert [e.value for e in valid] == pytest.approx([r["valid_loss"] for r in learn.history])
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == 0.1 and start.hparams["opt"].string_value == "sgd"
    assert start.hparams["clip"].string_value == "None"


def test_without_the_package_it_says_how_to_install_it(monkeypatch, tmp_path):
    from groundup.callbacks.tensorboard import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"needs the tensorboard package: pip install 'groundup\[tensorboard\]'"):
        TensorBoardLogger(tmp_path)
