"""`groundup evaluate`: the interpretation of a checkpoint on any labelled folder."""

import csv
import json
import re
import shutil

import pytest

from groundup.cli import main


@pytest.fixture
def run(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "4", "--num-workers", "0",
                 "--epochs", "3", "--quiet", "--out", str(out)]) == 0
    return out


def test_evaluate_writes_its_report_and_prints_the_per_class_table(run, image_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    capsys.readouterr()
    assert main(["evaluate", str(run / "model.pt"), "--data", str(image_folder), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"confusion_matrix.png", "top_losses.png", "per_class.csv",
                                               "summary.json", "report.html"}
    summary = json.loads((out / "summary.json").read_text())
    trained = json.loads((run / "summary.json").read_text())
    assert summary["n_images"] == 9  # the data set's val/ split, with the model of model.pt
    assert summary["metrics"]["accuracy"] == pytest.approx(trained["final"]["valid_acc"])
    assert summary["metrics"]["loss"] == pytest.approx(trained["final"]["valid_loss"], rel=1e-5)
    assert [r["name"] for r in csv.DictReader((out / "per_class.csv").open())] == ["cat", "dog", "emu"]
    printed = capsys.readouterr().out
    assert re.search(r"loss \d\.\d{4}, accuracy \d\.\d{4} on 9 images", printed)
    assert re.search(r"^name\s+support\s+accuracy\s+precision\s+recall\s+f1$", printed, re.MULTILINE)
    page = (out / "report.html").read_text()
    assert 'id="per-class"' in page and page.count("<img") == 2 and "groundup evaluate" in page


def test_evaluate_a_test_folder_of_label_folders(run, image_folder, tmp_path):
    test = tmp_path / "test"
    for label in ("cat", "emu"):
        shutil.copytree(image_folder / "train" / label, test / label)
    assert main(["evaluate", str(run / "model.pt"), "--data", str(test), "--out", str(tmp_path / "e"),
                 "--top-losses", "4"]) == 0
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["n_images"] == 12 and [r["support"] for r in summary["per_class"]] == [6, 0, 6]
    assert main(["evaluate", str(run / "model.pt"), "--data", str(image_folder), "--split", "train",
                 "--out", str(tmp_path / "e2")]) == 0
    assert json.loads((tmp_path / "e2" / "summary.json").read_text())["n_images"] == 18


@pytest.mark.parametrize("make_args, pattern", [
    (lambda run, data, t: [t / "missing.pt", "--data", data], r"checkpoint not found: .*missing.pt"),
    (lambda run, data, t: [run / "model.pt", "--data", t / "nowhere"], r"data folder not found"),
    (lambda run, data, t: [run / "model.pt", "--data", data, "--split", "test"], r"no test/ folder in"),
])
def test_evaluate_input_errors_are_one_line_and_leave_nothing(run, image_folder, tmp_path, capsys,
                                                              make_args, pattern):
    out = tmp_path / "eval"
    assert main(["evaluate", *map(str, make_args(run, image_folder, tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("groundup: error:") and len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not out.exists()


def test_help_lists_evaluate_and_its_options(capsys):
    assert main(["--help"]) == 0
    assert "evaluate" in capsys.readouterr().out
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("CHECKPOINT", "--data", "--split", "--out", "--bs", "--num-workers", "--top-losses",
                   "--device"):
        assert option in text


def test_evaluate_tta_scores_the_averaged_predictions(run, image_folder, tmp_path):
    import torch

    from groundup.run.interpret import Interpretation

    assert main(["evaluate", str(run / "model.pt"), "--data", str(image_folder), "--out", str(tmp_path / "e"),
                 "--tta"]) == 0
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    interp = Interpretation.from_checkpoint(run / "model.pt", image_folder, device="cpu", tta=True)
    assert summary["settings"]["tta"] is True
    assert summary["metrics"]["accuracy"] == pytest.approx(interp.accuracy)
    assert summary["metrics"]["loss"] == pytest.approx(interp.loss)
    plain = Interpretation.from_checkpoint(run / "model.pt", image_folder, device="cpu")
    assert not torch.allclose(interp.probs, plain.probs)


def test_evaluate_without_data_uses_the_data_the_checkpoint_was_trained_on(run, image_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "model.pt"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    trained = json.loads((run / "summary.json").read_text())
    assert summary["data_path"] == str(image_folder.resolve()) and summary["n_images"] == 9
    assert summary["metrics"]["accuracy"] == pytest.approx(trained["final"]["valid_acc"])


def test_evaluate_without_data_on_a_checkpoint_that_does_not_record_it_says_to_pass_data(
        run, image_folder, tmp_path, capsys):
    from groundup.learner import Learner
    from groundup.run.predictor import load_trained_model

    model, pre = load_trained_model(run / "model.pt")
    from groundup.data.loader import DataLoaders

    Learner(model, DataLoaders([], [], preprocessing=pre), lambda p, y: p.sum()).save(tmp_path / "saved.pt")
    assert main(["evaluate", str(tmp_path / "saved.pt"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not record the data" in err and "--data FOLDER" in err


def test_evaluate_help_says_what_data_defaults_to():
    import argparse

    from groundup.commands.evaluate import add_parser
    from groundup.commands.options import HelpFormatter

    p = add_parser(argparse.ArgumentParser().add_subparsers())
    text = " ".join(p.format_help().split())
    assert "(required)" not in text and "default: None" not in text
    assert "default: the data the checkpoint was trained on" in text
