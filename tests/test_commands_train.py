"""`groundup train`'s controls, config files and logs, from the command line (their Python twins are
tested beside their modules)."""

import pytest

from groundup.checkpoint import read_checkpoint
from groundup.cli import main


def tiny(folder, out, *extra, epochs=2):
    """Arguments for a fast, quiet run on the tiny image folder."""
    return ["train", "--data", str(folder), "--size", "16", "--bs", "4", "--workers", "0",
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


# -- short options ---------------------------------------------------------------------------------------
def test_short_aliases_b_j_e_work_and_are_listed_in_help(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "-b", "6", "-j", "0", "-e", "1", "--quiet",
                 "--out", str(out)]) == 0
    assert {k: read_checkpoint(out / "model.pt")["config"][k] for k in ("bs", "num_workers", "epochs")} == \
        {"bs": 6, "num_workers": 0, "epochs": 1}
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "-b BS, --bs BS" in text and "-j NUM_WORKERS, --workers NUM_WORKERS" in text
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
    assert "best.pt: epoch" in (out / "report.html").read_text()


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
