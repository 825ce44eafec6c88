import random

import numpy as np
import pytest
import torch

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.utils.checkpoint_file import (
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from groundup.data.folder import ImageDataLoaders
from groundup.learner import Callback, CancelFitException, Learner
from groundup.losses import cross_entropy
from groundup.nn.models import get_arch
from groundup.optim import SGD, Adam


def make_learner(folder, arch="resnet", opt_func=SGD, seed=0, cbs=()):
    dls = ImageDataLoaders.from_folder(folder, size=16, bs=4, num_workers=0, seed=seed)
    torch.manual_seed(seed)
    model = get_arch(arch, n_classes=len(dls.preprocessing.vocab))
    return Learner(model, dls, cross_entropy, lr=0.01, opt_func=opt_func,
                   cbs=[SetupLearnerCB("cpu"), TrackResults(print_table=False), *cbs])


def sgd_momentum(params, lr):
    return SGD(params, lr, momentum=0.9, weight_decay=1e-4)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


@pytest.mark.parametrize("opt_func", [sgd_momentum, Adam])
def test_resume_after_two_epochs_matches_an_uninterrupted_run_bit_for_bit(image_folder, tmp_path, opt_func):
    full = make_learner(image_folder, opt_func=opt_func)
    full.fit(3, cbs=[OneCycle(0.01)])

    first = make_learner(image_folder, opt_func=opt_func, cbs=[Checkpoint(tmp_path / "run")])
    first.fit(3, cbs=[OneCycle(0.01), _StopAfterEpoch(1)])  # killed after epoch 1 (of 0, 1, 2)
    resumed = make_learner(image_folder, opt_func=opt_func, seed=0)
    ckpt = resumed.load(tmp_path / "run" / "model.pt")
    assert ckpt["epoch"] == 1
    resumed.fit(3, cbs=[OneCycle(0.01)], start_epoch=ckpt["epoch"] + 1)

    assert_same_weights(full.model, resumed.model)
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]


class _StopAfterEpoch(Callback):
    """Stands in for a run killed after `epoch` finished."""
    order = 100

    def __init__(self, epoch):
        self.stop_epoch = epoch

    def after_epoch(self):
        if self.learn.epoch == self.stop_epoch:
            raise CancelFitException


def test_checkpoint_holds_everything_and_loads_with_weights_only(image_folder, tmp_path):
    learn = make_learner(image_folder)
    learn.fit(1)
    path = learn.save(tmp_path / "m.pt", config={"arch": "resnet"})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "groundup-checkpoint"
    assert raw["epoch"] == 0 and raw["n_epochs"] == 1
    assert raw["preprocessing"]["vocab"] == ["cat", "dog", "emu"] and raw["preprocessing"]["size"] == 16
    torch.testing.assert_close(torch.tensor(raw["preprocessing"]["mean"]), learn.preprocessing.mean)
    assert raw["arch"] == {"name": "resnet", "kwargs": learn.model.arch_spec["kwargs"]}
    assert set(raw["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert raw["history"][0]["epoch"] == 0 and raw["history"] == learn.history
    assert raw["opt"]["param_groups"][0]["lr"] == learn.lr
    assert raw["config"] == {"arch": "resnet"}
    assert "0.1.running_mean" in raw["model"]  # buffers too


def test_load_creates_the_optimizer_and_restores_callback_state(image_folder, tmp_path):
    learn = make_learner(image_folder, opt_func=Adam)
    learn.fit(2)
    learn.save(tmp_path / "m.pt")
    fresh = make_learner(image_folder, opt_func=Adam, seed=1)
    assert fresh.opt is None
    fresh.load(tmp_path / "m.pt")
    assert isinstance(fresh.opt, Adam)
    assert_same_weights(learn.model, fresh.model)
    for p, q in zip(learn.opt.param_groups[0]["params"], fresh.opt.param_groups[0]["params"]):
        assert torch.equal(learn.opt.state[p]["exp_avg"], fresh.opt.state[q]["exp_avg"])
        assert learn.opt.state[p]["step"] == fresh.opt.state[q]["step"]
    assert fresh.history == learn.history


def test_load_with_opt_false_takes_only_the_weights(image_folder, tmp_path):
    learn = make_learner(image_folder)
    learn.fit(1)
    learn.save(tmp_path / "m.pt")
    fresh = make_learner(image_folder, seed=3)
    fresh.load(tmp_path / "m.pt", with_opt=False)
    assert fresh.opt is None
    assert_same_weights(learn.model, fresh.model)


def test_save_before_training_records_no_finished_epoch(image_folder, tmp_path):
    learn = make_learner(image_folder)
    ckpt = read_checkpoint(learn.save(tmp_path / "m.pt"))
    assert ckpt["epoch"] == -1 and ckpt["opt"] is None


def test_rng_states_round_trip():
    state = get_rng_state()
    draws = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def test_truncated_checkpoint_is_a_clear_error(image_folder, tmp_path):
    learn = make_learner(image_folder)
    path = learn.save(tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        learn.load(path)


def test_a_foreign_file_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="not a groundup checkpoint"):
        read_checkpoint(tmp_path / "w.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_a_pickled_object_is_refused_without_running_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))
    torch.save({"format": "groundup-checkpoint", "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "evil.pt")


def test_checkpoint_of_another_architecture_names_it(image_folder, tmp_path):
    learn = make_learner(image_folder, arch="simple_cnn")
    learn.save(tmp_path / "m.pt", config={"arch": "simple_cnn"})
    other = make_learner(image_folder, arch="resnet")
    with pytest.raises(CheckpointError, match="does not fit this model.*simple_cnn"):
        other.load(tmp_path / "m.pt")


def test_extra_keys_may_not_replace_checkpoint_entries(image_folder, tmp_path):
    learn = make_learner(image_folder)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(learn, tmp_path / "m.pt", model={})


def test_a_failed_save_leaves_the_previous_file_intact_and_a_save_is_fsynced(image_folder, tmp_path, monkeypatch):
    import os

    learn = make_learner(image_folder)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = save_checkpoint(learn, tmp_path / "ck" / "c.pt")
    assert len(synced) == 2  # the file before its rename, the folder after it: durable
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # killed mid-write
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(learn, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pt"]  # no temporary file left
    learn.dls.close()


def test_checkpoint_callback_saves_every_epoch_and_keeps_the_best(image_folder, tmp_path):
    cb = Checkpoint(tmp_path / "run", best_by="valid_loss")
    learn = make_learner(image_folder, cbs=[cb])
    learn.fit(3)
    history = learn.history
    best_epoch = min(history, key=lambda r: r["valid_loss"])["epoch"]
    assert read_checkpoint(tmp_path / "run" / "model.pt")["epoch"] == 2
    best = read_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == best_epoch == cb.best_epoch
    assert best["callbacks"]["checkpoint"]["best"] == pytest.approx(history[best_epoch]["valid_loss"])


def test_checkpoint_callback_with_a_file_name_and_accuracy(image_folder, tmp_path):
    cb = Checkpoint(tmp_path / "out" / "exp.pt", best_by="valid_acc")
    learn = make_learner(image_folder, cbs=[cb])
    learn.fit(2)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["best.pt", "exp.pt"]
    history = learn.history
    assert cb.best == max(r["valid_acc"] for r in history)


def test_checkpoint_callback_can_save_once_at_the_end(image_folder, tmp_path, monkeypatch):
    saves = []
    import groundup.callbacks.checkpoint as module
    monkeypatch.setattr(module, "save_checkpoint", lambda learn, path, **kw: saves.append((path.name, kw)))
    learn = make_learner(image_folder, cbs=[Checkpoint(tmp_path, every_epoch=False, best_by=None,
                                                       extra={"config": {"x": 1}})])
    learn.fit(3)
    assert saves == [("model.pt", {"epoch": 2, "config": {"x": 1}})]


def test_checkpoint_callback_checks_its_arguments(image_folder, tmp_path):
    with pytest.raises(ValueError, match="best_by must be one of"):
        Checkpoint(tmp_path, best_by="valid_los")
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0)
    learn = Learner(get_arch("simple_cnn", n_classes=3), dls, cross_entropy, cbs=[SetupLearnerCB("cpu"),
                                                                                  Checkpoint(tmp_path)])
    with pytest.raises(ValueError, match="add TrackResults"):
        learn.fit(1)


def test_load_checkpoint_is_the_function_behind_learner_load(image_folder, tmp_path):
    learn = make_learner(image_folder)
    learn.fit(1)
    save_checkpoint(learn, tmp_path / "m.pt")
    fresh = make_learner(image_folder, seed=5)
    assert load_checkpoint(fresh, tmp_path / "m.pt")["epoch"] == 0
    assert_same_weights(learn.model, fresh.model)
