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
