"""`groundup train`'s controls, config files and logs, from the command line (their Python twins are
tested beside their modules)."""

import pytest

from groundup.cli import main
from groundup.utils.checkpoint_file import read_checkpoint


def tiny(folder, out, *extra, epochs=2):
    """Arguments for a fast, quiet run on the tiny image folder."""
    return ["train", "--data", str(folder), "--size", "16", "--bs", "4", "--num-workers", "0",
            "--epochs", str(epochs), "--quiet", "--out", str(out), *extra]


def assert_one_line_error(capsys, pattern):
    import re

    err = capsys.readouterr().err
    assert re.fullmatch(rf"groundup: error: .*{pattern}.*\n", err), err


# -- optimizer -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt, key", [("sgd", "momentum"), ("adam", "betas")])
def test_wd_and_momentum_reach_the_optimizer_and_momentum_stays_fixed_under_one_cycle(image_folder, tmp_path,
                                                                                       opt, key):
    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--opt", opt, "--wd", "0.05", "--momentum", "0.8")) == 0
    ckpt = read_checkpoint(out / "model.pt")
    group = ckpt["opt"]["param_groups"][0]
    assert group["weight_decay"] == 0.05
    assert (group[key] if key == "momentum" else group[key][0]) == 0.8  # one-cycle would leave 0.95
    assert ckpt["config"]["wd"] == 0.05 and ckpt["config"]["momentum"] == 0.8


def test_without_momentum_one_cycle_still_cycles_it(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--opt", "sgd")) == 0
    group = read_checkpoint(out / "model.pt")["opt"]["param_groups"][0]
    assert group["weight_decay"] == 1e-4 and group["momentum"] == pytest.approx(0.95, abs=0.02)


def test_nesterov_sgd_from_the_command_line(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--opt", "sgd", "--nesterov")) == 0
    ckpt = read_checkpoint(out / "model.pt")
    assert ckpt["opt"]["param_groups"][0]["nesterov"] is True and ckpt["config"]["nesterov"] is True
    assert "nesterov = true" in (out / "config.toml").read_text()
    assert main(tiny(image_folder, tmp_path / "adam", "--nesterov")) == 2
    assert "--nesterov is a kind of SGD momentum: it needs --opt sgd" in capsys.readouterr().err


# -- short options ---------------------------------------------------------------------------------------
def test_short_aliases_b_j_e_work_and_are_listed_in_help(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "-b", "6", "-j", "0", "-e", "1", "--quiet",
                 "--out", str(out)]) == 0
    assert {k: read_checkpoint(out / "model.pt")["config"][k] for k in ("bs", "num_workers", "epochs")} == \
        {"bs": 6, "num_workers": 0, "epochs": 1}
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "-b BS, --bs BS" in text and "-j NUM_WORKERS, --num-workers NUM_WORKERS" in text
    assert "-e EPOCHS, --epochs EPOCHS" in text
    assert main(["lr-find", "--help"]) == 0
    assert "-b BS, --bs BS" in capsys.readouterr().out


# -- monitor and early stopping ----------------------------------------------------------------------------
def test_monitor_valid_acc_picks_best_pt_and_the_summary_names_it(image_folder, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--monitor", "valid_acc", epochs=3)) == 0
    summary = json.loads((out / "summary.json").read_text())
    accs = [r["valid_acc"] for r in read_checkpoint(out / "model.pt")["history"]]
    best_epoch = accs.index(max(accs))
    assert summary["monitor"] == "valid_acc" and summary["best"]["epoch"] == best_epoch
    assert read_checkpoint(out / "best.pt")["epoch"] == best_epoch
    assert "best.pt holds the epoch with the highest valid_acc" in (out / "report.html").read_text()


def test_patience_stops_a_run_that_does_not_improve_and_keeps_best_pt(image_folder, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    # lr 1e-30 leaves the weights as they are: the validation loss never improves after epoch 0
    assert main(tiny(image_folder, out, "--patience", "2", "--lr", "1e-30", "--schedule", "constant",
                     epochs=10)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_epoch"] == 2 and len(read_checkpoint(out / "model.pt")["history"]) == 3
    assert read_checkpoint(out / "best.pt")["epoch"] == 0
    # resuming a run that stopped early trains no more
    assert main(["train", "--resume", str(out / "model.pt"), "--quiet"]) == 0
    assert read_checkpoint(out / "model.pt")["epoch"] == 2


def test_patience_and_monitor_are_checked(image_folder, tmp_path, capsys):
    assert main(tiny(image_folder, tmp_path / "a", "--patience", "0")) == 2
    assert_one_line_error(capsys, r"argument --patience: must be a positive integer, got 0")
    assert main(tiny(image_folder, tmp_path / "b", "--monitor", "valid_los")) == 2
    assert_one_line_error(capsys, r"argument --monitor: invalid choice: 'valid_los'")


# -- clipping and accumulation -------------------------------------------------------------------------------
def initial_weights(folder):
    from groundup.run.build import build_learner
    from groundup.run.config import TrainConfig

    learn = build_learner(TrainConfig(data=str(folder), size=16, bs=4, num_workers=0))
    learn.dls.close()
    return {k: v.clone() for k, v in learn.model.state_dict().items()}


def test_clip_bounds_every_step(image_folder, tmp_path):
    import torch

    out = tmp_path / "run"
    # plain SGD (no momentum, no weight decay): each step moves the weights by lr x (clipped gradient)
    assert main(tiny(image_folder, out, "--opt", "sgd", "--momentum", "0", "--wd", "0", "--schedule", "constant",
                     "--lr", "0.1", "--clip", "1e-6")) == 0
    start, end = initial_weights(image_folder), read_checkpoint(out / "model.pt")["model"]
    moved = torch.sqrt(sum(((end[k] - start[k]) ** 2).sum() for k in start))
    assert 0 < moved <= 10 * 0.1 * 1e-6 * 1.001  # 10 steps of at most lr x 1e-6
    assert read_checkpoint(out / "model.pt")["config"]["clip"] == 1e-6


def test_accumulate_steps_once_every_k_batches(image_folder, tmp_path):
    out = tmp_path / "run"
    # 18 training images in batches of 4: 5 batches per epoch, in groups of 3 and 2: 2 steps per epoch
    assert main(tiny(image_folder, out, "--accumulate", "3")) == 0
    ckpt = read_checkpoint(out / "model.pt")
    assert {s["step"] for s in ckpt["opt"]["state"].values()} == {4}  # Adam counts its steps
    assert ckpt["config"]["accumulate"] == 3


@pytest.mark.parametrize("flag, value, pattern", [
    ("--clip", "0", r"argument --clip: must be a positive number, got 0"),
    ("--clip", "big", r"argument --clip: must be a positive number, got 'big'"),
    ("--accumulate", "0", r"argument --accumulate: must be a positive integer, got 0"),
])
def test_clip_and_accumulate_are_checked(image_folder, tmp_path, capsys, flag, value, pattern):
    assert main(tiny(image_folder, tmp_path / "run", flag, value)) == 2
    assert_one_line_error(capsys, pattern)


# -- resume with more epochs ---------------------------------------------------------------------------------
def test_resume_extends_a_constant_schedule_run_to_more_epochs(image_folder, tmp_path):
    import torch

    cut, full = tmp_path / "cut", tmp_path / "full"
    assert main(tiny(image_folder, cut, "--schedule", "constant", epochs=2)) == 0
    assert main(["train", "--resume", str(cut / "model.pt"), "--epochs", "3", "--quiet", "-j", "0"]) == 0
    ckpt = read_checkpoint(cut / "model.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["epochs"] == 3 and len(ckpt["history"]) == 3
    # the same as three epochs in one go
    assert main(tiny(image_folder, full, "--schedule", "constant", epochs=3)) == 0
    for k, v in read_checkpoint(full / "model.pt")["model"].items():
        assert torch.equal(v, ckpt["model"][k]), k


def test_resume_cannot_change_the_epochs_of_a_one_cycle_run_and_says_why(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(image_folder, out, epochs=1)) == 0
    assert main(["train", "--resume", str(out / "model.pt"), "--epochs", "3"]) == 2
    assert_one_line_error(capsys, r"--epochs 3 cannot change the resumed run's 1 epochs: its one-cycle schedule "
                                  r"sets each batch's lr from the progress through all 1, .*start a new run")


# -- logs ----------------------------------------------------------------------------------------------------
def test_a_run_writes_steps_csv_with_a_row_per_training_batch(image_folder, tmp_path):
    import csv
    import json

    out = tmp_path / "run"
    assert main(tiny(image_folder, out)) == 0
    with open(out / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "iteration", "lr", "loss"] and len(rows) == 2 * 5  # 5 batches of 4 or 2
    recorded = read_checkpoint(out / "model.pt")["callbacks"]["recorder"]
    assert [float(r["loss"]) for r in rows] == pytest.approx(recorded["losses"])
    assert "steps.csv" in json.loads((out / "summary.json").read_text())["files"]


def test_tensorboard_writes_event_files_into_the_run_folder(image_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--tensorboard")) == 0
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert len(acc.Scalars("train/loss")) == 10 and len(acc.Scalars("epoch/valid_acc")) == 2
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    assert read_checkpoint(out / "model.pt")["config"]["tensorboard"] is True


def test_tensorboard_without_the_package_is_a_one_line_error(image_folder, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(tiny(image_folder, tmp_path / "run", "--tensorboard")) == 2
    assert_one_line_error(capsys, r"--tensorboard: TensorBoard logging needs the tensorboard package: "
                                  r"pip install 'groundup\[tensorboard\]'")
    assert not (tmp_path / "run").exists()


# -- config files --------------------------------------------------------------------------------------------
def write_toml(path, text):
    path.write_text(text)
    return str(path)


def test_settings_come_from_a_toml_file_and_flags_win(image_folder, tmp_path):
    out = tmp_path / "run"
    config = write_toml(tmp_path / "run.toml", f"""
data = "{image_folder}"
epochs = 1
bs = 6
size = 16
num-workers = 0      # the option's spelling works too
label-smoothing = 0.1
schedule = "constant"
monitor = "valid_acc"
quiet = true
out = "{out}"
""")
    assert main(["train", "--config", config, "--bs", "4"]) == 0
    saved = read_checkpoint(out / "model.pt")["config"]
    assert (saved["bs"], saved["epochs"], saved["size"], saved["num_workers"]) == (4, 1, 16, 0)
    assert saved["schedule"] == "constant" and saved["monitor"] == "valid_acc" and saved["label_smoothing"] == 0.1


def test_print_config_prints_toml_that_config_loads_back(image_folder, tmp_path, capsys):
    from groundup.run.config import TrainConfig

    config = write_toml(tmp_path / "a.toml", f'data = "{image_folder}"\nepochs = 3\nclip = 0.5\n')
    assert main(["train", "--config", config, "-b", "8", "--patience", "2", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "bs = 8" in printed and "patience = 2" in printed and "# wd: not set (adam's default, 0.01)" in printed
    again = write_toml(tmp_path / "b.toml", printed)
    expected = TrainConfig(data=str(image_folder), epochs=3, clip=0.5, bs=8, patience=2)
    assert TrainConfig.from_toml(again) == expected
    assert main(["train", "--config", again, "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    assert not (tmp_path / "runs").exists()


def test_every_option_of_train_can_come_from_the_file():
    import argparse
    import dataclasses

    from groundup.commands.train import FILE_EXTRAS, add_parser
    from groundup.run.config import TrainConfig

    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    dests = {a.dest for a in parser._actions} - {"help", "config", "print_config", "list_recipes"}  # not settings
    assert dests <= {f.name for f in dataclasses.fields(TrainConfig)} | set(FILE_EXTRAS)


@pytest.mark.parametrize("text, pattern", [
    ("lrr = 0.1\n", r"a.toml: unknown setting 'lrr' \(did you mean 'lr'\?\); valid settings: data, epochs, "),
    ("bs = 0\n", r"a.toml: --bs must be a positive integer, got 0"),
    ("quiet = 1\n", r"a.toml: quiet must be a bool, got 1"),
    ("epochs = \n", r"a.toml is not valid TOML: "),
])
def test_a_bad_config_file_is_a_one_line_error_naming_the_key(tmp_path, capsys, text, pattern):
    assert main(["train", "--config", write_toml(tmp_path / "a.toml", text), "--out", str(tmp_path / "run")]) == 2
    assert_one_line_error(capsys, pattern)
    assert not (tmp_path / "run").exists()


def test_every_run_folder_has_its_config_toml(image_folder, tmp_path):
    from groundup.run.config import TrainConfig

    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--lr", "auto", epochs=1)) == 0
    cfg = TrainConfig.from_toml(out / "config.toml")
    assert cfg.to_dict() == read_checkpoint(out / "model.pt")["config"]
    assert isinstance(cfg.lr, float)  # the lr the finder found, so the file repeats the run


def test_piped_output_gets_a_plain_progress_line_per_epoch(image_folder, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "groundup", "train", "--data", str(image_folder), "--size", "16",
                        "-b", "4", "-j", "0", "-e", "2", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(" done in ")[0] for line in lines] == ["epoch 0", "epoch 1"], r.stderr
    assert "\r" not in r.stderr and "training batches" in lines[0]


# -- recipes and the recipe's ingredients ------------------------------------------------------------------
def test_list_recipes_prints_each_recipe_with_its_flags(capsys):
    from groundup.run.recipes import RECIPES

    assert main(["train", "--list-recipes"]) == 0
    out = capsys.readouterr().out
    for name, recipe in RECIPES.items():
        assert f"{name}: {recipe.description}" in out
    assert "--arch resnet_fast" in out and "--augment" in out and "--no-wd-norms" in out


def test_a_recipe_sets_its_settings_and_options_given_override_them(capsys):
    from groundup.run.recipes import RECIPES

    assert main(["train", "--recipe", "fast", "--epochs", "3", "--no-compile", "--print-config"]) == 0
    printed = capsys.readouterr().out
    fast = RECIPES["fast"].settings
    assert 'recipe = "fast"' in printed and f'arch = "{fast["arch"]}"' in printed
    assert "augment = true" in printed and "tta = true" in printed and "wd_norms = false" in printed
    assert "epochs = 3" in printed and "compile = false" in printed  # given: they win


def test_a_config_file_can_name_a_recipe_and_flags_still_win(tmp_path, capsys):
    config = write_toml(tmp_path / "a.toml", 'recipe = "fast"\nepochs = 5\n')
    assert main(["train", "--config", config, "--bs", "32", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "augment = true" in printed and "epochs = 5" in printed and "bs = 32" in printed


def test_an_unknown_recipe_is_a_one_line_error_with_the_closest_name(tmp_path, capsys):
    assert main(["train", "--recipe", "fats", "--out", str(tmp_path / "run")]) == 2
    assert_one_line_error(capsys, r"--recipe: no recipe 'fats' \(did you mean 'fast'\?\); recipes: fast")
    assert not (tmp_path / "run").exists()


def test_the_fast_recipe_trains_with_augmentation_and_reports_the_tta_accuracy(image_folder, tmp_path):
    import json

    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--recipe", "fast", "--no-compile", epochs=1)) == 0
    summary = json.loads((out / "summary.json").read_text())
    config = summary["config"]
    assert config["recipe"] == "fast" and config["augment"] and config["tta"] and config["arch"] == "resnet_fast"
    assert config["size"] == 16 and config["epochs"] == 1  # given on the command line
    assert 0.0 <= summary["tta_acc"] <= 1.0
    assert "flip test-time augmentation" in summary["per_class_note"]
    ckpt = read_checkpoint(out / "model.pt")
    groups = ckpt["opt"]["param_groups"]
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 5e-4]  # --no-wd-norms: norms and biases apart
    assert all(g["nesterov"] for g in groups) and config["opt"] == "sgd"


def test_label_smoothing_reaches_the_loss(image_folder, tmp_path):
    import csv

    losses = {}
    for eps in ("0", "0.5"):
        out = tmp_path / f"run{eps}"
        assert main(tiny(image_folder, out, "--label-smoothing", eps, "--lr", "1e-9", epochs=1)) == 0
        losses[eps] = float(next(csv.DictReader((out / "metrics.csv").open()))["valid_loss"])
    assert losses["0"] != losses["0.5"]


@pytest.mark.parametrize("flag, value, pattern", [("--crop-scale", "1.5", "--crop-scale must be a fraction"),
                                                  ("--label-smoothing", "-0.1", "--label-smoothing"),
                                                  ("--warmup", "1.5", "--warmup"),
                                                  ("--crop", "zoom", "--crop: invalid choice: 'zoom'")])
def test_recipe_ingredients_are_checked(image_folder, tmp_path, capsys, flag, value, pattern):
    assert main(tiny(image_folder, tmp_path / "run", flag, value)) == 2
    assert_one_line_error(capsys, pattern)


def test_pad_crops_reach_the_training_batches_and_keep_the_stored_size(image_folder, tmp_path):
    from groundup.run.build import augment_for, build_learner
    from groundup.run.config import TrainConfig

    cfg = TrainConfig(data=str(image_folder), size=32, augment=True, crop="pad", num_workers=0, seed=3)
    aug = augment_for(cfg)
    assert (aug.crop, aug.size, aug.stored_size, aug.shift, aug.seed) == ("pad", 32, 32, 2, 3)
    learn = build_learner(cfg)
    try:
        assert learn.dls.augment.crop == "pad"
        xb, _ = next(iter(learn.dls.train))
        assert xb.shape[1:3] == (32, 32)  # stored at the training size, not 1.25x
    finally:
        learn.dls.close()
    assert augment_for(TrainConfig(augment=True)).crop == "resize" and augment_for(TrainConfig()) is None
    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--augment", "--crop", "pad")) == 0
    assert 'crop = "pad"' in (out / "config.toml").read_text()


def test_valid_bs_sets_the_validation_batches_and_defaults_to_twice_bs(image_folder, tmp_path, capsys):
    from groundup.run.build import build_learner
    from groundup.run.config import TrainConfig

    for valid_bs, want in ((None, 8), (3, 3)):
        learn = build_learner(TrainConfig(data=str(image_folder), size=16, bs=4, valid_bs=valid_bs, num_workers=0))
        try:
            assert (learn.dls.train.bs, learn.dls.valid.bs) == (4, want)
        finally:
            learn.dls.close()
    out = tmp_path / "run"
    assert main(tiny(image_folder, out, "--valid-bs", "3")) == 0
    assert "valid_bs = 3" in (out / "config.toml").read_text()
    assert main(tiny(image_folder, tmp_path / "bad", "--valid-bs", "0")) == 2
    assert_one_line_error(capsys, "--valid-bs")
