"""`groundup train --init RUN_OR_CHECKPOINT`: start from another run's weights (groundup.run.init)."""

import json
import re

import pytest
import torch
from conftest import make_image_folder

from groundup.cli import main
from groundup.nn.models import IMAGENET_STATS, resnet18
from groundup.run.init import LR_MULT, init_lr
from groundup.utils.checkpoint_file import read_checkpoint


def tiny(folder, out, *extra, epochs=1):
    return ["train", "--data", str(folder), "--size", "16", "--bs", "4", "--num-workers", "0", "--arch", "resnet",
            "--epochs", str(epochs), "--out", str(out), *extra]


def assert_one_line_error(capsys, pattern):
    err = capsys.readouterr().err
    assert re.fullmatch(rf"groundup: error: .*{pattern}.*\n", err), err


@pytest.fixture
def source_run(image_folder, tmp_path):
    out = tmp_path / "source"
    assert main(tiny(image_folder, out, "--quiet")) == 0
    return out


def test_init_from_a_run_with_other_classes_keeps_the_body_and_makes_a_new_head(source_run, tmp_path, capsys):
    other = make_image_folder(tmp_path / "other", classes=("ant", "bee", "cow", "doe", "elk"), seed=1)
    out = tmp_path / "tuned"
    capsys.readouterr()
    assert main(tiny(other, out, "--init", str(source_run), "--freeze-epochs", "1", "--epochs", "2")) == 0
    err = capsys.readouterr().out
    assert re.search(r"new head: \S+model.pt has 3 classes, this data has 5 classes; kept \d+ tensors of the body, "
                     r"dropped 2 \(\d+.weight, \d+.bias\), made 2 new", err), err
    assert "trained the head for 1 epochs with the body frozen" in err
    source, tuned = read_checkpoint(source_run / "model.pt"), read_checkpoint(out / "model.pt")
    summary = json.loads((out / "summary.json").read_text())
    init = summary["init"]
    assert init["from"] == str(source_run / "model.pt") and init["classes_before"] == 3 and init["new_head"]
    assert init["made"] == 2 and init["dropped"] == 2 and "valid_acc" in init["frozen"]
    assert summary["config"]["init"] == str(source_run) and len(tuned["history"]) == 2  # the run's own epochs
    torch.testing.assert_close(torch.tensor(summary["stats"]["mean"]), torch.tensor(source["preprocessing"]["mean"]))
    # the run's epochs used discriminative rates, one optimizer group per layer group, peaks lr/200 .. lr/2
    groups = tuned["opt"]["param_groups"]
    assert sorted({g["layer_group"] for g in groups}) == [0, 1, 2]
    assert "started from" in (out / "report.html").read_text()


def test_init_with_the_same_classes_takes_every_tensor(source_run, image_folder, tmp_path, capsys):
    capsys.readouterr()
    assert main(tiny(image_folder, tmp_path / "again", "--init", str(source_run / "model.pt"),
                     "--freeze-epochs", "0")) == 0
    assert re.search(r"starting from \S+: all \d+ tensors, the head too \(the same 3 classes\)", capsys.readouterr().out)


def test_a_run_started_with_init_resumes(source_run, image_folder, tmp_path):
    out = tmp_path / "tuned"
    assert main(tiny(image_folder, out, "--init", str(source_run), "--epochs", "2", "--quiet")) == 0
    ckpt = read_checkpoint(out / "model.pt")
    ckpt["epoch"], ckpt["history"] = 0, ckpt["history"][:1]  # as if stopped after the first of two epochs
    torch.save(ckpt, out / "model.pt")
    assert main(["train", "--resume", str(out / "model.pt"), "--quiet"]) == 0
    assert read_checkpoint(out / "model.pt")["epoch"] == 1


def test_init_lr_is_fine_tunes_second_phase():
    assert init_lr(2e-3) == slice(2e-3 / 2 / LR_MULT, 1e-3)


def test_init_from_another_architecture_is_one_line(source_run, image_folder, tmp_path, capsys):
    args = tiny(image_folder, tmp_path / "b", "--init", str(source_run))
    args[args.index("resnet")] = "simple_cnn"
    assert main(args) == 2
    assert_one_line_error(capsys, r"--init \S+model.pt was trained as --arch resnet, this run is --arch simple_cnn; "
                                  r"pass --arch resnet")


def test_init_from_a_file_that_is_not_a_checkpoint_is_one_line(image_folder, tmp_path, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("not weights")
    assert main(tiny(image_folder, tmp_path / "b", "--init", str(junk))) == 2
    assert_one_line_error(capsys, r"notes.txt: it is not a torch file")
    torch.save({"a": [1, 2]}, tmp_path / "list.pt")
    assert main(tiny(image_folder, tmp_path / "c", "--init", str(tmp_path / "list.pt"))) == 2
    assert_one_line_error(capsys, r"list.pt is not a groundup checkpoint")
    assert main(tiny(image_folder, tmp_path / "d", "--init", str(tmp_path / "missing"))) == 2
    assert_one_line_error(capsys, r"--init \S+missing: no such run folder or checkpoint file")


def test_init_with_a_state_dict_of_another_model_names_the_first_tensor(image_folder, tmp_path, capsys):
    torch.save(resnet18(n_classes=3).state_dict(), tmp_path / "r18.pth")
    assert main(tiny(image_folder, tmp_path / "b", "--init", str(tmp_path / "r18.pth"))) == 2
    assert_one_line_error(capsys, r"--init \S+r18.pth does not fit this model's body: it has no '0.0.weight'")


def test_init_from_a_torchvision_state_dict_for_resnet18_uses_imagenet_statistics(image_folder, tmp_path, capsys):
    torch.save(resnet18().state_dict(), tmp_path / "resnet18-f37072fd.pth")  # torchvision's names, 1000 classes
    out = tmp_path / "r18"
    capsys.readouterr()
    args = tiny(image_folder, out, "--init", str(tmp_path / "resnet18-f37072fd.pth"),
                "--freeze-epochs", "0")
    args[args.index("resnet")] = "resnet18"
    assert main(args) == 0
    assert re.search(r"new head: \S+ has a head of 1000 outputs, this data has 3 classes", capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    torch.testing.assert_close(torch.tensor(summary["stats"]["mean"]), torch.tensor(IMAGENET_STATS[0]))
    assert summary["init"]["kept"] == 120 and summary["init"]["made"] == 2
