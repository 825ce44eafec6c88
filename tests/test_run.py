"""The run layer: build_learner, fit_run and write_run_folder, which `groundup train` composes."""

import json

import pytest
import torch

from groundup.callbacks.distributed import DistributedTraining
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.setup import SetupLearnerCB
from groundup.utils.checkpoint_file import CheckpointError, read_checkpoint
from groundup.run.config import TrainConfig
from groundup.run.build import build_learner, resolve_data, shipped_dataset
from groundup.run.fit import fit_run
from groundup.run.folder import new_out_dir, write_run_folder
from groundup.run.resume import open_resume
from groundup.run.train import train


def tiny(folder, **kw):
    return TrainConfig(data=str(folder), size=16, bs=4, num_workers=0, epochs=2, **kw)


def test_build_learner_makes_the_loaders_model_and_device_callbacks(image_folder):
    learn = build_learner(tiny(image_folder))
    try:
        assert [type(cb) for cb in learn.cbs] == [SetupLearnerCB, DistributedTraining]
        assert learn.preprocessing.vocab == ["cat", "dog", "emu"] and learn.preprocessing.size == 16
        assert learn.model.arch_spec == {"name": "simple_cnn", "kwargs": {"n_in": 3, "n_classes": 3}}
        again = build_learner(tiny(image_folder))  # seeded: the same weights
        assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), again.model.parameters()))
        amp = build_learner(tiny(image_folder, amp=True, lr="auto"))
        assert any(isinstance(cb, MixedPrecision) for cb in amp.cbs) and amp.lr == 1e-3
    finally:
        learn.dls.close()


def test_resolve_data_takes_a_folder_the_shipped_set_or_says_what_is_missing(image_folder, tmp_path):
    assert resolve_data(str(image_folder)) == image_folder
    assert resolve_data(None) == shipped_dataset()
    with pytest.raises(FileNotFoundError, match="data folder not found: .*nowhere .*data set's name"):
        resolve_data(str(tmp_path / "nowhere"))


def test_fit_run_then_write_run_folder(image_folder, tmp_path):
    cfg = tiny(image_folder)
    learn = build_learner(cfg)
    out = new_out_dir(str(tmp_path / "run"))
    facts = fit_run(learn, cfg, out, quiet=True, say=lambda *a: None)
    learn.dls.close()
    assert facts["start_epoch"] == 0 and facts["lr_finder"] is None and len(facts["recorder"].losses) == 2 * 5
    assert read_checkpoint(out / "model.pt")["config"] == cfg.to_dict()
    assert [r["epoch"] for r in learn.history] == [0, 1]
    facts.update(data_path=image_folder, wall_seconds=1.5, started="now", resumed_from=None, argv=["x"])
    summary = write_run_folder(learn, cfg, out, facts)
    assert {p.name for p in out.iterdir()} >= {"metrics.csv", "summary.json", "report.html", "losses.png",
                                                 "schedule.png", "model.pt", "best.pt"}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["final"] == summary["final"] == learn.history[-1]
    assert on_disk["vocab"] == ["cat", "dog", "emu"] and on_disk["command"] == "groundup x"


def test_train_resumes_with_the_checkpoints_settings(image_folder, tmp_path):
    summary = train(tiny(image_folder), out=str(tmp_path / "run"), quiet=True)
    assert summary["config"]["epochs"] == 2
    resume = open_resume(tmp_path / "run" / "model.pt", {"data": str(image_folder), "num_workers": 1})
    saved, cfg = resume.checkpoint["config"], resume.cfg
    assert cfg.num_workers == 1 and cfg.size == saved["size"] == 16  # only data and workers may change


def test_a_checkpoint_without_run_settings_cannot_resume(image_folder, tmp_path):
    learn = build_learner(tiny(image_folder))
    learn.dls.close()
    learn.save(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="has no run settings .*Learner.load"):
        open_resume(tmp_path / "plain.pt")


def test_compile_in_the_config_compiles_the_learners_model(image_folder):
    from groundup.callbacks.compile import CompileModel
    from groundup.cli import build_parser
    from groundup.commands.train import config_from_args

    args = build_parser().parse_args(["train", "--data", str(image_folder), "--compile"])
    cfg = config_from_args(args)
    assert cfg.compile is True and TrainConfig().compile is False
    learn = build_learner(tiny(image_folder, compile=True))
    learn.dls.close()
    assert sum(isinstance(cb, CompileModel) for cb in learn.cbs) == 1
    assert learn.dls.train.drop_last  # one batch shape: no second compile for the last, smaller batch
    assert not build_learner(tiny(image_folder)).dls.train.drop_last


def test_validation_during_fit_runs_at_size_not_at_the_train_size(image_folder, tmp_path):
    """The last row of metrics.csv is what `groundup evaluate` (no TTA) says of model.pt: validation sees --size."""
    import csv

    from groundup.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--augment", "--train-size", "8",
                 "--bs", "4", "--num-workers", "0", "--epochs", "1", "--lr", "0.003", "--quiet", "--out", str(out)]) == 0
    last = list(csv.DictReader((out / "metrics.csv").open()))[-1]
    assert main(["evaluate", str(out / "model.pt"), "--data", str(image_folder), "--out",
                 str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "summary.json").read_text())["metrics"]
    assert float(last["valid_acc"]) == pytest.approx(evaluated["accuracy"])
    assert float(last["valid_loss"]) == pytest.approx(evaluated["loss"], rel=1e-5)
